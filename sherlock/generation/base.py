"""The generation backend interface: requests in, assistant continuations out.

A backend answers each request (one image, one user turn, optionally a pre-filled start of the
assistant turn) with the text the model writes AFTER that prefix, cut so that prefix +
continuation ends right after its first ``</CONCLUSION>`` (METHOD.md §1). Backends are looked
up by name (``load_backend``) so the workflow can switch between transformers and vLLM.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sherlock.response import cut_after_conclusion


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt: ``key`` identifies it in the caller's bookkeeping; ``image`` is a file path."""

    key: str
    image: str
    user_text: str
    assistant_prefix: str = ""


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; temperature 0 means greedy decoding."""

    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


def cut_continuation(prefix: str, continuation: str) -> str:
    """The continuation, shortened so prefix + continuation ends after its first ``</CONCLUSION>``.

    A ``</CONCLUSION>`` already inside the prefix leaves nothing to continue; with none anywhere
    the continuation is kept whole.
    """
    cut = cut_after_conclusion(prefix + continuation)
    return cut[len(prefix) :]


class GenerationBackend(ABC):
    """Something that answers generation requests (transformers or vLLM)."""

    @abstractmethod
    def generate(
        self, requests: Sequence[GenerationRequest], sampling: SamplingParams
    ) -> list[str]:
        """For each request, in order, the assistant text after its prefix (see module doc).

        Batch ``b`` of a call (requests ``b·batch_size`` onwards) samples with seed
        ``sampling.seed + b``, so a call split into whole batches gives the same texts
        (``sherlock.generation.resumable`` relies on it).
        """


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


class TextBackend(Protocol):
    """A text-only chat model (the llm judge): the reply to each user message, in order."""

    def generate_text(self, user_texts: Sequence[str], sampling: SamplingParams) -> list[str]: ...


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
    backend as generation, METHOD.md §7.2), loaded for ``model_path``."""
    return _factory(TEXT_BACKENDS, name)(model_path, **options)


def _factory(registry: dict[str, Callable[..., Any]], name: str) -> Callable[..., Any]:
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ValueError(f"unknown generation backend {name!r}; known backends: {known}") from None
