"""The generation backends by name: ``transformers`` (any model transformers loads, CPU or GPU)
and ``vllm`` (GPU, in the vLLM environment), for vision-language prompts and for the text-only
llm judge. Implementations are imported only when asked for: a vLLM environment need not have
the training stack, and the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sherlock.generation.base import GenerationBackend, TextBackend


def _transformers_backend(model_path: str, **options: Any) -> GenerationBackend:
    # Imported lazily: torch/transformers are heavy and a vLLM environment may not want them.
    from sherlock.generation.hf import TransformersBackend

    return TransformersBackend(model_path, **options)


def _require_vllm() -> None:
    # Only importable in the vLLM environment (envs/vllm.yaml).
    try:
        import vllm  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"the vllm generation backend needs the vLLM environment ({error}): run Snakemake "
            "with --sdm conda, or set python.generate to the python of an environment made "
            "with `pip install -e '.[vllm]'`"
        ) from error


def _vllm_backend(model_path: str, **options: Any) -> GenerationBackend:
    _require_vllm()
    from sherlock.generation.vllm_backend import VLLMBackend

    return VLLMBackend(model_path, **options)


BACKENDS: dict[str, Callable[..., GenerationBackend]] = {
    "transformers": _transformers_backend,
    "vllm": _vllm_backend,
}


def load_backend(name: str, model_path: str, **options: Any) -> GenerationBackend:
    """The backend registered as ``name``, loaded for ``model_path`` with backend ``options``."""
    return _factory(BACKENDS, name)(model_path, **options)


def _transformers_text_backend(model_path: str, **options: Any) -> TextBackend:
    from sherlock.generation.hf import TransformersTextBackend

    return TransformersTextBackend(model_path, **options)


def _vllm_text_backend(model_path: str, **options: Any) -> TextBackend:
    _require_vllm()
    from sherlock.generation.vllm_backend import VLLMTextBackend

    return VLLMTextBackend(model_path, **options)


TEXT_BACKENDS: dict[str, Callable[..., TextBackend]] = {
    "transformers": _transformers_text_backend,
    "vllm": _vllm_text_backend,
}


def load_text_backend(name: str, model_path: str, **options: Any) -> TextBackend:
    """The text backend of the generation backend ``name`` (the llm judge runs on the same
    backend as generation, docs/method.md §7), loaded for ``model_path``."""
    return _factory(TEXT_BACKENDS, name)(model_path, **options)


def _factory(registry: dict[str, Callable[..., Any]], name: str) -> Callable[..., Any]:
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ValueError(f"unknown generation backend {name!r}; known backends: {known}") from None
