"""A tiny Llama-3.2-Vision as vision-heavy as the paper's model, and records to train it on.

The paper's model is Llama-3.2-11B-Vision: its vision encoder (32 local + 8 global layers of
width 1280) reads four 560×560 tiles, 4 × 1601 patch tokens, per image; its text decoder (40
layers of width 4096, 8 of them cross-attending to the image) reads the sequence. What decides
how much sharing the image features can save is the ratio

    R = forward FLOPs of the vision encoder + projector over one image
        / forward FLOPs of the language model over one sequence (cross-attention included)

Both are counted with ``torch.utils.flop_counter`` on the 11B configuration built on the meta
device (no weights, no download), for a sequence of ``PAPER_TOKENS`` tokens of which the last
``PAPER_TARGET_TOKENS`` are targets (the LM head runs only over those, as in the trainer). The
tiny model's R is counted the same way on the benchmark's own batch (the script prints both),
and its vision depth is the one that brings R closest to the paper's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from sherlock.data.records import strip_image_token
from sherlock.embedded.synthetic import build_synthetic_dataset
from sherlock.embedded.tiny_model import build_tiny_vlm, corpus_from_jsonl
from sherlock.perturbation.recipes import truncate
from sherlock.preference.encoding import sequence_log_probs
from sherlock.preference.records import PreferenceExample, preference_row
from sherlock.preference.vision_sharing import shared_vision_inputs

# A Sherlock sequence of the paper's data, in Llama 3 tokens: about 770 on average over a
# record's six distinct sequences (two direct ones of ~500 — question and a four-stage answer
# — and four REFINE ones of ~900 — question, previous answer, instruction, target); an
# assumption, stated here, since the paper's records are not in this repository.
PAPER_TOKENS = 768
PAPER_TARGET_TOKENS = 300
LLAMA_32_11B_VISION = {
    "vision_config": {
        "image_size": 560,
        "patch_size": 14,
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_global_layers": 8,
        "attention_heads": 16,
        "max_num_tiles": 4,
        "vision_output_dim": 7680,
        "intermediate_layers_indices": [3, 7, 15, 23, 30],
    },
    "text_config": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 40,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38],
    },
}
# The tiny model: text large enough for a CPU step to be compute-bound; the vision tower's
# width and tile size fixed, and its depth the one whose R is nearest the paper's (counted on
# the benchmark's batches: depth 9 gives R = 1.18, depth 10 R = 1.29, against the paper's
# 1.23; the lower one, so as not to flatter the sharing).
TINY = {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "vision_embed_dim": 128}
TINY_IMAGE_SIZE = 112
VISION_DEPTH = 9
SEED = 7


def flops(fn: Any) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def paper_ratio(tokens: int = PAPER_TOKENS, targets: int = PAPER_TARGET_TOKENS) -> dict:
    """Forward TFLOPs of Llama-3.2-11B-Vision's vision side per image and language side per
    sequence, and their ratio R."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    # Eager attention: the SDPA mask helpers read tensor values, which meta tensors lack.
    config = MllamaConfig(**LLAMA_32_11B_VISION, attn_implementation="eager")
    with torch.device("meta"):
        model = MllamaForConditionalGeneration(config)
        tiles = config.vision_config.max_num_tiles
        size = config.vision_config.image_size
        pixels = torch.zeros(1, 1, tiles, 3, size, size)
        ratio_ids = torch.ones(1, 1, dtype=torch.long)
        ratio_mask = torch.ones(1, 1, tiles, dtype=torch.long)
        ids = torch.zeros(1, tokens, dtype=torch.long)
        inputs = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "cross_attention_mask": torch.ones(1, tokens, 1, tiles, dtype=torch.long),
            "pixel_values": pixels,
            "aspect_ratio_ids": ratio_ids,
            "aspect_ratio_mask": ratio_mask,
        }
        images = torch.zeros(1, dtype=torch.long, device="cpu")  # which image: a real number
        vision = flops(lambda: shared_vision_inputs(model, inputs, images))
        shared = shared_vision_inputs(model, inputs, images)
        text = flops(lambda: model(**shared, use_cache=False, logits_to_keep=targets))
    return {"vision_tflops": vision / 1e12, "text_tflops": text / 1e12, "ratio": vision / text}


def batch_ratio(model: Any, batch: dict[str, Any]) -> dict:
    """The same counts for ``model`` on a collated batch (``PreferenceCollator``): vision per
    image, language per distinct sequence (the mean over the batch), and their ratio R."""
    inputs = {k: v for k, v in batch.items() if k in _MODEL_KEYS}
    images = batch["sequence_images"]
    count = int(images.unique().numel())
    vision = flops(lambda: shared_vision_inputs(model, inputs, images))
    total = flops(lambda: sequence_log_probs(model, inputs, images))
    text = (total - vision) / len(images)
    return {"vision_flops": vision / count, "text_flops": text, "ratio": vision / count / text}


_MODEL_KEYS = (
    "input_ids",
    "labels",
    "attention_mask",
    "pixel_values",
    "aspect_ratio_ids",
    "aspect_ratio_mask",
    "cross_attention_mask",
)


def wrong_answer(answer: str) -> str:
    """The same head up to the reasoning, a different reasoning and conclusion."""
    head = answer[: answer.index("<REASONING>")]
    return head + "<REASONING>I cannot tell.</REASONING><CONCLUSION>nothing</CONCLUSION>"


def offline_records(synthetic: Path, count: int) -> list[dict]:
    """Offline-style preference rows of the synthetic records: chosen = Y*, rejected = Y*'s
    head and another reasoning, both prefixes cut from Y* (p_w = p_l), i = 0, 1, 2 in turn."""
    lines = (synthetic / "train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = []
    for n, line in enumerate(lines[:count]):
        record = json.loads(line)
        chosen = record["conversations"][1]["value"]
        prefix = truncate(chosen, n % 3, "reference")
        example = PreferenceExample(
            id=record["id"],
            image=str(synthetic / record["image"]),
            question=strip_image_token(record["conversations"][0]["value"]),
            chosen=chosen,
            rejected=wrong_answer(chosen),
            prefix=prefix,
            prefix_l=prefix,
            truncation=n % 3,
            noise_level=1.0 if n % 3 == 2 else 0.2,
        )
        rows.append(preference_row(example))
    return rows


def build(folder: Path, records: int, vision_depth: int) -> tuple[Path, Path]:
    """The tiny model and the preference file under ``folder`` (reused when there)."""
    model_dir, prefs = folder / f"mllama_depth{vision_depth}", folder / "offline_prefs.json"
    synthetic = folder / "synthetic"
    if not (synthetic / "train.jsonl").is_file():
        build_synthetic_dataset(synthetic, records, 4, TINY_IMAGE_SIZE, SEED)
    if not prefs.is_file() or len(json.loads(prefs.read_text())) < records:
        prefs.write_text(json.dumps(offline_records(synthetic, records), indent=1))
    if not (model_dir / "config.json").is_file():
        corpus = corpus_from_jsonl([synthetic / "train.jsonl"])
        build_tiny_vlm(
            model_dir,
            corpus,
            seed=SEED,
            image_size=TINY_IMAGE_SIZE,
            architecture="mllama",
            vision_depth=vision_depth,
            **TINY,
        )
        open_cross_attention(model_dir)
    return model_dir, prefs


def open_cross_attention(model_dir: Path, gate: float = 0.5) -> None:
    """Set the cross-attention gates of the Mllama under ``model_dir`` to ``gate``.

    A freshly initialised Mllama's gates are 0 (tanh(0) shuts every cross-attention layer),
    so its image would change no log-probability and a step that dropped the image would pass
    for an equal one; a trained model's gates are open.
    """
    from transformers import MllamaForConditionalGeneration

    model = MllamaForConditionalGeneration.from_pretrained(model_dir)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                parameter.fill_(gate)
    model.save_pretrained(model_dir)
