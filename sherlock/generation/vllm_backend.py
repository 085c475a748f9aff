"""Generation with vLLM: the GPU backend for the models vLLM serves (Qwen2-VL, Qwen2.5-VL, ...),
and ``VLLMTextBackend``, the same engine for the text model of the llm judge.

It runs in its own environment (``envs/vllm.yaml``, or ``pip install -e ".[vllm]"`` in a
separate venv): vLLM pins torch and transformers versions that LLaMA-Factory rejects.

Every request of a call goes to vLLM in ONE ``LLM.generate`` call (the engine batches them
continuously), as a text prompt rendered by the model's own chat template
(``sherlock.data.chat.render_prompt``, the same text the transformers backend and LLaMA-Factory use)
with the image as multi-modal data. A pre-filled assistant prefix is part of the prompt, so the
model continues it. Sampling is exactly what ``SamplingParams`` says: the model's
``generation_config.json`` defaults (Qwen's top-k, repetition penalty) are not applied.

The seed contract of ``GenerationBackend`` holds per request: request ``i`` is sampled with
seed ``seed + i // batch_size`` (its batch's seed), and vLLM's per-request seeds make a request's
text independent of what else is in flight, so chunked, resumed and sharded runs give the same
texts. ``batch_size`` therefore only names the seed groups; the engine sizes its own batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sherlock.data.chat import render_prompt
from sherlock.data.images import fit_pixels, load_rgb, pixel_limits
from sherlock.data.response import CONCLUSION_END
from sherlock.generation.base import (
    GenerationBackend,
    GenerationRequest,
    SamplingParams,
    cut_continuation,
)
from sherlock.runtime.safe_loading import require_safetensors

_DTYPES = {"auto", "float32", "float16", "bfloat16"}


def engine_arguments(
    model_path: str,
    *,
    dtype: str,
    trust_remote_code: bool,
    seed: int,
    gpu_memory_utilization: float,
    max_model_len: int | None,
    images_per_prompt: int = 1,
) -> dict[str, Any]:
    """The keywords of ``vllm.LLM`` for one model answering prompts of ``images_per_prompt``
    images (0: a text-only model)."""
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} for vLLM; expected one of {sorted(_DTYPES)}")
    arguments: dict[str, Any] = {
        "model": model_path,
        "tokenizer": model_path,
        "dtype": dtype,
        "trust_remote_code": trust_remote_code,
        "seed": seed,
        "gpu_memory_utilization": gpu_memory_utilization,
        # Sampling defaults come from our settings only, never the model's generation config.
        "generation_config": "vllm",
    }
    if images_per_prompt:
        arguments["limit_mm_per_prompt"] = {"image": images_per_prompt}
    if max_model_len is not None:
        arguments["max_model_len"] = max_model_len
    return arguments


def request_sampling(
    vllm_sampling_class: Any,
    sampling: SamplingParams,
    index: int,
    batch_size: int,
    stop_token_ids: Sequence[int],
    stop: Sequence[str] = (CONCLUSION_END,),
) -> Any:
    """vLLM's sampling parameters of request ``index`` of a call (its batch's seed); the text
    ends at the first of ``stop`` (kept in the text) or a ``stop_token_ids`` token."""
    greedy = sampling.temperature == 0
    return vllm_sampling_class(
        n=1,
        temperature=sampling.temperature,
        top_p=1.0 if greedy else sampling.top_p,
        top_k=0,
        min_p=0.0,
        repetition_penalty=1.0,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        max_tokens=sampling.max_new_tokens,
        seed=None if greedy else sampling.seed + index // batch_size,
        stop=list(stop),
        include_stop_str_in_output=bool(stop),
        stop_token_ids=list(stop_token_ids),
        skip_special_tokens=True,
    )


def generation_eos_ids(model_path: str, tokenizer: Any) -> list[int]:
    """The ids that end an answer: the tokenizer's eos and the model's generation eos ids (e.g.
    ``<|im_end|>``), as the transformers backend stops on them."""
    from transformers import GenerationConfig

    ids: list[int] = []
    try:
        configured = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:  # no generation_config.json
        configured = None
    if configured is not None:
        ids += configured if isinstance(configured, list) else [configured]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))


class _Engine:
    """What both vLLM backends share: one ``vllm.LLM`` per model, and every prompt of a call in
    one engine call, request ``i`` with its batch's seed."""

    def _settings(self, model_path: str, batch_size: int, progress: bool) -> None:
        """Checked before anything of the model is read."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = str(model_path)
        self.batch_size = batch_size
        self.progress = progress
        require_safetensors(self.model_path)

    def _start_engine(
        self, tokenizer: Any, engine: Any, images_per_prompt: int, **engine_options: Any
    ) -> None:
        """The model's stop ids, and its engine (``engine`` when given: tests, callers)."""
        import vllm

        self.tokenizer = tokenizer
        self._sampling_class = vllm.SamplingParams
        self.stop_token_ids = generation_eos_ids(self.model_path, tokenizer)
        if engine is None:
            arguments = engine_arguments(
                self.model_path, images_per_prompt=images_per_prompt, **engine_options
            )
            engine = vllm.LLM(**arguments)
        self.engine = engine

    def _texts(
        self, prompts: list[dict[str, Any]], sampling: SamplingParams, stop: Sequence[str]
    ) -> list[str]:
        """The generated text of each prompt, in order, from one engine call."""
        params = [
            request_sampling(
                self._sampling_class, sampling, index, self.batch_size, self.stop_token_ids, stop
            )
            for index in range(len(prompts))
        ]
        outputs = self.engine.generate(prompts, params, use_tqdm=self.progress)
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM answered {len(outputs)} of {len(prompts)} prompts")
        return [output.outputs[0].text for output in outputs]


class VLLMBackend(_Engine, GenerationBackend):
    """Batched generation through ``vllm.LLM`` (see the module doc).

    ``engine`` is for tests and callers that hold an engine already; by default one is built
    from ``engine_arguments``.
    """

    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 8,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        seed: int = 0,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        image_min_pixels: int | None = None,
        image_max_pixels: int | None = None,
        image_resample: str = "bicubic",
        progress: bool = True,
        engine: Any = None,
    ) -> None:
        from transformers import AutoProcessor

        self._settings(model_path, batch_size, progress)
        self.pixels = pixel_limits(image_min_pixels, image_max_pixels, image_resample)
        self.processor = AutoProcessor.from_pretrained(
            self.model_path, trust_remote_code=trust_remote_code
        )
        self._start_engine(
            self.processor.tokenizer,
            engine,
            images_per_prompt=1,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
        )

    def prompt(self, request: GenerationRequest) -> dict[str, Any]:
        """vLLM's prompt of one request: chat-template text + the image as multi-modal data."""
        text = render_prompt(self.processor, request.user_text, request.assistant_prefix)
        text = _without_bos(text, self.tokenizer.bos_token)
        image = load_rgb(request.image)
        if self.pixels is not None:
            image = fit_pixels(image, *self.pixels)
        return {"prompt": text, "multi_modal_data": {"image": image}}

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: SamplingParams
    ) -> list[str]:
        if not requests:
            return []
        prompts = [self.prompt(request) for request in requests]
        if not sampling.stop_at_conclusion:  # the raw answer, to the end of the turn
            return self._texts(prompts, sampling, stop=())
        texts = self._texts(prompts, sampling, stop=(CONCLUSION_END,))
        return [
            cut_continuation(request.assistant_prefix, text)
            for request, text in zip(requests, texts, strict=True)
        ]


class VLLMTextBackend(_Engine):
    """Text-only chat replies through ``vllm.LLM``: the llm judge when generation runs on vLLM.

    The same contract as ``sherlock.generation.hf.TransformersTextBackend.generate_text``: the
    reply to each user message, rendered by the tokenizer's chat template, in one engine call;
    request ``i`` is seeded with its batch's seed. Replies end at the model's eos (no
    ``</CONCLUSION>`` stop: a judge's reply has none).
    """

    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 8,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        seed: int = 0,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        progress: bool = True,
        engine: Any = None,
    ) -> None:
        from transformers import AutoTokenizer

        self._settings(model_path, batch_size, progress)
        tokenizer = AutoTokenizer.from_pretrained(
            self.model_path, trust_remote_code=trust_remote_code
        )
        if tokenizer.chat_template is None:
            raise ValueError(f"{model_path}: the judge model's tokenizer has no chat template")
        self._start_engine(
            tokenizer,
            engine,
            images_per_prompt=0,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
        )

    def prompt(self, user_text: str) -> dict[str, Any]:
        """vLLM's prompt of one user message, opened for the assistant's reply."""
        messages = [{"role": "user", "content": user_text}]
        text = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        return {"prompt": _without_bos(text, self.tokenizer.bos_token)}

    def generate_text(self, user_texts: Sequence[str], sampling: SamplingParams) -> list[str]:
        """The assistant's reply to each user message, in order."""
        if not user_texts:
            return []
        return self._texts([self.prompt(text) for text in user_texts], sampling, stop=())


def _without_bos(text: str, bos: str | None) -> str:
    """The prompt text without a leading bos: vLLM's tokenizer adds it itself, and a template
    that writes it too (Llama 3) would double it."""
    return text[len(bos) :] if bos and text.startswith(bos) else text
