"""Tiny random-initialised vision-language models, built locally so nothing is downloaded.

Three architectures, each a real transformers class with its family's processor, special
tokens and a chat template that renders exactly LLaMA-Factory's template for it:

- ``qwen2_vl``: Qwen2-VL (the embedded default), template ``qwen2_vl``;
- ``qwen2_5_vl``: Qwen2.5-VL (window-attention vision tower), template ``qwen2_vl``;
- ``mllama``: Llama-3.2-Vision (cross-attention image layers, image tiles), template ``mllama``.

The folder written is a standard Hugging Face checkpoint (safetensors, config, generation
config, tokenizer trained on the task's own text, processor), so training (LLaMA-Factory),
preference training and generation see the same tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from sherlock.embedded import mllama, qwen_vl
from sherlock.embedded.architectures import ARCHITECTURES, TEMPLATES
from sherlock.embedded.tokenizer import corpus_from_jsonl, refine_prompt_text

__all__ = [
    "ARCHITECTURES",
    "TEMPLATES",
    "build_tiny_vlm",
    "corpus_from_jsonl",
    "count_parameters",
    "refine_prompt_text",
    "special_token_ids",
]


def build_tiny_vlm(
    out_dir: Path,
    corpus: Iterable[str],
    *,
    seed: int,
    image_size: int,
    architecture: str = "qwen2_vl",
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_depth: int = 2,
    vision_embed_dim: int = 32,
    image_feature_scale: float = 1.0,
) -> dict[str, Any]:
    """Write a random-initialised model of ``architecture`` with a tokenizer trained on
    ``corpus``; every image is resized to ``image_size``² pixels (Qwen: a multiple of 28;
    Mllama: one tile). ``image_feature_scale`` multiplies the projector's output layer at
    initialisation, so image features enter the language model that many times larger (the
    random projector's are small beside the text embeddings: measured, the tiny Qwen2-VL then
    learns which cells hold a shape but not their colours). Returns a summary: parameter count,
    vocabulary size, image layout."""
    if architecture not in TEMPLATES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
    size = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "vision_depth": vision_depth,
        "vision_embed_dim": vision_embed_dim,
    }
    corpus = list(corpus)
    if architecture == "mllama":
        model, processor, layout = mllama.build(corpus, size, image_size, seed)
    else:
        model, processor, layout = qwen_vl.build(architecture, corpus, size, image_size, seed)
    if image_feature_scale != 1.0:
        layer = projector_output_layer(model)
        with torch.no_grad():
            layer.weight.mul_(image_feature_scale)
            if layer.bias is not None:
                layer.bias.mul_(image_feature_scale)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    processor.tokenizer.save_pretrained(out_dir)
    summary = {
        "architecture": architecture,
        "template": TEMPLATES[architecture],
        "parameters": count_parameters(model),
        "vocab_size": len(processor.tokenizer),
        "image_size": image_size,
        **layout,
        "seed": seed,
        **({"image_feature_scale": image_feature_scale} if image_feature_scale != 1.0 else {}),
    }
    (out_dir / "tiny_model.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def projector_output_layer(model: torch.nn.Module) -> torch.nn.Linear:
    """The last linear layer between the vision tower and the language model: Qwen2-VL's and
    Qwen2.5-VL's merger MLP output, Mllama's multi-modal projector."""
    inner = getattr(model, "model", model)
    if hasattr(inner, "visual"):
        return inner.visual.merger.mlp[-1]
    return inner.multi_modal_projector


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters of a model (all of them, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def special_token_ids(tokenizer: Any, tokens: Sequence[str]) -> dict[str, int]:
    """Ids of the named special tokens in a tokenizer."""
    return {token: tokenizer.convert_tokens_to_ids(token) for token in tokens}
