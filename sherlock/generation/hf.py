"""Generation with transformers: the CPU / small-run backend.

Requests are answered in batches of ``batch_size`` in the order given. Prompts are rendered by
``sherlock.data.chat.render_prompt`` and LEFT padded, so every sequence ends where its generation
starts and a request's output does not depend on its batch-mates. Sampling is exactly what
``SamplingParams`` says (temperature, top_p; no top-k, no repetition penalty from the model's
generation config) and batch ``b`` is seeded with ``seed + b``, so a run is reproducible.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch
from tqdm import tqdm
from transformers import AutoModelForImageTextToText, AutoProcessor

from sherlock.data.chat import encode_prompts, render_prompt
from sherlock.data.images import fit_pixels, load_rgb, pixel_limits
from sherlock.data.response import CONCLUSION_END
from sherlock.generation.base import (
    GenerationBackend,
    GenerationRequest,
    SamplingParams,
    cut_continuation,
)
from sherlock.runtime.safe_loading import model_load_kwargs

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def resolve_device(device: str) -> torch.device:
    """``"auto"``: the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``"auto"``: bfloat16 on a GPU that supports it, float32 otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        known = ", ".join(["auto", *sorted(_DTYPES)])
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {known}") from None


def pad_left(tokenizer: Any) -> None:
    """Left padding, so generation appends at the right end of every row of a batch."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def decoding_kwargs(sampling: SamplingParams) -> dict[str, Any]:
    """``generate`` keywords for exactly this sampling: no top-k; greedy unsets the knobs a
    model's generation config may carry (Qwen's has some)."""
    if sampling.temperature > 0:
        return {
            "do_sample": True,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": 0,
        }
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


class _BatchSettings:
    """Batch size, device, dtype and progress display shared by the transformers backends."""

    def _set_batching(
        self, batch_size: int, device: str, dtype: str | torch.dtype, progress: bool
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.progress = progress
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)


class TransformersBackend(GenerationBackend, _BatchSettings):
    """Batched generation with ``AutoModelForImageTextToText`` + ``AutoProcessor``."""

    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 8,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
        progress: bool = True,
        trust_remote_code: bool = False,
        image_min_pixels: int | None = None,
        image_max_pixels: int | None = None,
        image_resample: str = "bicubic",
    ) -> None:
        self._set_batching(batch_size, device, dtype, progress)
        # LLaMA-Factory's resizing of training images, applied to ours too (images.fit_pixels).
        self.pixels = pixel_limits(image_min_pixels, image_max_pixels, image_resample)
        self.model_path = str(model_path)
        load = model_load_kwargs(self.model_path, trust_remote_code)
        processor = AutoProcessor.from_pretrained(
            self.model_path, trust_remote_code=trust_remote_code
        )
        model = AutoModelForImageTextToText.from_pretrained(
            self.model_path, dtype=self.dtype, **load
        )
        self._attach(model.to(self.device), processor)

    @classmethod
    def from_model(
        cls,
        model: Any,
        processor: Any,
        *,
        batch_size: int = 8,
        progress: bool = False,
        image_min_pixels: int | None = None,
        image_max_pixels: int | None = None,
    ) -> TransformersBackend:
        """A backend over a model and processor already in memory, on the model's device and
        in its dtype (``sherlock-gpu-check`` measures randomly initialised architectures)."""
        backend = cls.__new__(cls)
        backend._set_batching(batch_size, str(model.device), model.dtype, progress)
        backend.pixels = (image_min_pixels or 1, image_max_pixels) if image_max_pixels else None
        backend.model_path = "(in memory)"
        backend._attach(model, processor)
        return backend

    def _attach(self, model: Any, processor: Any) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        pad_left(self.tokenizer)
        self.model = model.eval()
        self.eos_token_ids = self._eos_token_ids()

    def _eos_token_ids(self) -> list[int]:
        """The tokenizer's eos and the model's generation eos ids (e.g. ``<|im_end|>``)."""
        ids: list[int] = []
        configured = self.model.generation_config.eos_token_id
        if configured is not None:
            ids += configured if isinstance(configured, list) else [configured]
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return sorted(set(ids))

    def _image(self, path: str) -> Any:
        image = load_rgb(path)
        return image if self.pixels is None else fit_pixels(image, *self.pixels)

    def _encode(self, batch: Sequence[GenerationRequest]) -> dict[str, Any]:
        prompts = [render_prompt(self.processor, r.user_text, r.assistant_prefix) for r in batch]
        inputs = encode_prompts(
            self.processor,
            prompts,
            [self._image(r.image) for r in batch],
            padding=True,
            padding_side="left",
            return_tensors="pt",
        )
        return {
            k: v.to(self.device, dtype=self.dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in inputs.items()
        }

    def _sampling_kwargs(self, sampling: SamplingParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "eos_token_id": self.eos_token_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
            "tokenizer": self.tokenizer,
            "repetition_penalty": 1.0,
            **decoding_kwargs(sampling),
        }
        if sampling.stop_at_conclusion:
            kwargs["stop_strings"] = [CONCLUSION_END]
        return kwargs

    @torch.inference_mode()
    def generate(
        self, requests: Sequence[GenerationRequest], sampling: SamplingParams
    ) -> list[str]:
        kwargs = self._sampling_kwargs(sampling)
        batches = [
            requests[start : start + self.batch_size]
            for start in range(0, len(requests), self.batch_size)
        ]
        outputs: list[str] = []
        bar = tqdm(
            total=len(requests),
            desc="generate",
            unit="req",
            file=sys.stderr,
            disable=not self.progress or not requests,
        )
        for index, batch in enumerate(batches):
            inputs = self._encode(batch)
            torch.manual_seed(sampling.seed + index)
            generated = self.model.generate(**inputs, **kwargs)
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(
                new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
            if sampling.stop_at_conclusion:
                texts = [
                    cut_continuation(r.assistant_prefix, text)
                    for r, text in zip(batch, texts, strict=True)
                ]
            outputs += texts
            bar.update(len(batch))
        bar.close()
        return outputs


class TransformersTextBackend(_BatchSettings):
    """Batched text-only chat generation with ``AutoModelForCausalLM`` (the llm judge)."""

    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 8,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
        progress: bool = True,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._set_batching(batch_size, device, dtype, progress)
        load = model_load_kwargs(model_path, trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(
            str(model_path), trust_remote_code=trust_remote_code
        )
        if self.tokenizer.chat_template is None:
            raise ValueError(f"{model_path}: the judge model's tokenizer has no chat template")
        pad_left(self.tokenizer)
        self.model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=self.dtype, **load)
        self.model.to(self.device).eval()

    @torch.inference_mode()
    def generate_text(self, user_texts: Sequence[str], sampling: SamplingParams) -> list[str]:
        """The assistant's reply to each user message, in order."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            **decoding_kwargs(sampling),
        }
        replies: list[str] = []
        starts = range(0, len(user_texts), self.batch_size)
        for index, start in enumerate(tqdm(starts, desc="judge", disable=not self.progress)):
            prompts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
                )
                for text in user_texts[start : start + self.batch_size]
            ]
            inputs = self.tokenizer(
                prompts, padding=True, add_special_tokens=False, return_tensors="pt"
            ).to(self.device)
            torch.manual_seed(sampling.seed + index)
            generated = self.model.generate(**inputs, **kwargs)
            replies += self.tokenizer.batch_decode(
                generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
            )
        return replies
