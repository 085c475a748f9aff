"""A base model's architecture without its weights: its ``config.json`` and the shape read from it.

Where the config comes from, first found wins: a local model folder; the Hugging Face cache
(``models--{org}--{name}/snapshots/*/config.json`` under ``HF_HUB_CACHE``, ``HF_HOME/hub`` or
``~/.cache/huggingface/hub``); the published configs shipped in ``sherlock/gpucheck/configs/``
(Llama-3.2-11B-Vision-Instruct, Qwen2.5-VL-7B/3B-Instruct, and Qwen2.5-7B-Instruct, the llm
judge of the presets); or, for ``base_model.path: tiny``, the ``tiny_model`` keys, laid out as
``sherlock.embedded`` builds them. Pure Python: the Snakefile reads it at parse time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).parent / "configs"
# Hub ids whose published config.json ships with the package.
SHIPPED = {
    "meta-llama/Llama-3.2-11B-Vision-Instruct": "Llama-3.2-11B-Vision-Instruct.json",
    "Qwen/Qwen2.5-VL-7B-Instruct": "Qwen2.5-VL-7B-Instruct.json",
    "Qwen/Qwen2.5-VL-3B-Instruct": "Qwen2.5-VL-3B-Instruct.json",
    "Qwen/Qwen2.5-7B-Instruct": "Qwen2.5-7B-Instruct.json",
}


class ArchitectureUnknown(ValueError):
    """No config.json could be found for a model; the message says where it looked."""


def _hub_caches() -> list[Path]:
    folders = []
    if os.environ.get("HF_HUB_CACHE"):
        folders.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        folders.append(Path(os.environ["HF_HOME"]) / "hub")
    folders.append(Path.home() / ".cache" / "huggingface" / "hub")
    return folders


def cached_config(hub_id: str) -> Path | None:
    """The newest cached ``config.json`` of a hub id, or None."""
    name = "models--" + hub_id.replace("/", "--")
    for cache in _hub_caches():
        found = sorted((cache / name / "snapshots").glob("*/config.json"), key=os.path.getmtime)
        if found:
            return found[-1]
    return None


def model_config(path: str) -> tuple[dict[str, Any], str]:
    """(config.json as a dict, where it came from) of a model folder or hub id."""
    folder = Path(path)
    if (folder / "config.json").is_file():
        return json.loads((folder / "config.json").read_text(encoding="utf-8")), str(folder)
    if cached := cached_config(path):
        return json.loads(cached.read_text(encoding="utf-8")), f"{cached} (Hugging Face cache)"
    shipped = SHIPPED.get(path) or next(
        (file for hub, file in SHIPPED.items() if hub.split("/")[-1] == folder.name), None
    )
    if shipped:
        file = CONFIGS / shipped
        return json.loads(file.read_text(encoding="utf-8")), f"{file.name} (published, shipped)"
    raise ArchitectureUnknown(
        f"{path}: no config.json (not a model folder, not in the Hugging Face cache, and not one "
        f"of the shipped configs: {', '.join(SHIPPED)})"
    )


def tiny_config(tiny: dict[str, Any], image_size: int = 56) -> dict[str, Any]:
    """The config.json ``sherlock.embedded`` writes for the ``tiny_model`` keys (vocabulary:
    ``vocab_size``, the size its tokenizer is trained to; Mllama tiles of ``image_size``)."""
    arch, hidden, layers = tiny["architecture"], tiny["hidden_size"], tiny["num_layers"]
    heads, vision = tiny["num_heads"], tiny["vision_embed_dim"]
    text = {
        "vocab_size": tiny["vocab_size"],
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
    }
    if arch == "mllama":
        return {
            "model_type": "mllama",
            "text_config": {**text, "cross_attention_layers": list(range(1, layers, 2))},
            "vision_config": {
                "hidden_size": vision,
                "num_hidden_layers": tiny["vision_depth"],
                "num_global_layers": 1,
                "attention_heads": 2,
                "intermediate_size": 4 * vision,
                "intermediate_layers_indices": [0],
                "vision_output_dim": 2 * vision,
                "image_size": image_size,
                "patch_size": 14,
                "max_num_tiles": 4,
            },
        }
    # Multimodal rotary frequencies split over (time, height, width), as sherlock.embedded does.
    half = hidden // heads // 2
    time = half // 4
    height = (half - time) // 2
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [time, height, half - time - height],
    }
    common = {"model_type": arch, "text_config": text, "tie_word_embeddings": False}
    if arch == "qwen2_vl":
        return {
            **common,
            "vision_config": {
                "depth": tiny["vision_depth"],
                "embed_dim": vision,
                "mlp_ratio": 4,
                "num_heads": 2,
                "hidden_size": hidden,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
            },
        }
    return {
        **common,
        "vision_config": {
            "depth": tiny["vision_depth"],
            "hidden_size": vision,
            "intermediate_size": 4 * vision,
            "out_hidden_size": hidden,
            "num_heads": 2,
            "window_size": 112,
            "fullatt_block_indexes": [tiny["vision_depth"] - 1],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
    }


def base_model_config(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The base model's config.json of a run config, and where it came from."""
    if config["base_model"]["path"] == "tiny":
        image_size = config.get("synthetic", {}).get("image_size", 56)
        return tiny_config(config["tiny_model"], image_size), "tiny_model (built on the spot)"
    return model_config(config["base_model"]["path"])


@dataclass(frozen=True)
class TextShape:
    """A decoder's sizes (Llama / Qwen2 layout; Mllama's cross-attention layers included)."""

    vocab: int
    embed_rows: int  # Mllama's embedding has 8 rows more than its vocabulary
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    qkv_bias: bool
    tied: bool
    cross_layers: int = 0


@dataclass(frozen=True)
class VisionShape:
    """A vision tower's sizes. ``family``: mllama, qwen2_vl or qwen2_5_vl."""

    family: str
    hidden: int
    layers: int
    heads: int
    intermediate: int
    patch: int
    out: int  # width of what reaches the language model (Mllama: the projector's output)
    global_layers: int = 0  # Mllama: gated global layers after the local ones
    image_size: int = 0  # Mllama: tile side in pixels
    max_tiles: int = 1
    aspect_ratios: int = 0  # Mllama: supported aspect ratios
    output_dim: int = 0  # Mllama: the tower's stacked output width (projector input)
    merge: int = 1  # Qwen: spatial merge
    temporal_patch: int = 1
    window: int = 0  # Qwen2.5-VL: attention window side, in patches
    full_layers: tuple[int, ...] = ()  # Qwen2.5-VL: blocks attending over the whole image


@dataclass(frozen=True)
class ModelShape:
    model_type: str
    text: TextShape
    vision: VisionShape | None


def _get(config: dict, key: str, default: Any = None) -> Any:
    return config.get(key, default) if config.get(key) is not None else default


def shape_of(config: dict[str, Any]) -> ModelShape:
    """The sizes the FLOP model needs, from a config.json (published flat form or nested)."""
    model_type = config["model_type"]
    text_cfg = {**config, **config.get("text_config", {})}
    heads = text_cfg["num_attention_heads"]
    hidden = text_cfg["hidden_size"]
    vocab = text_cfg["vocab_size"]
    cross = len(_get(text_cfg, "cross_attention_layers", []))
    tied = bool(_get(config, "tie_word_embeddings", _get(text_cfg, "tie_word_embeddings", False)))
    text = TextShape(
        vocab=vocab,
        embed_rows=vocab + 8 if model_type == "mllama" else vocab,
        hidden=hidden,
        layers=text_cfg["num_hidden_layers"],
        heads=heads,
        kv_heads=_get(text_cfg, "num_key_value_heads", heads),
        head_dim=_get(text_cfg, "head_dim", hidden // heads),
        intermediate=text_cfg["intermediate_size"],
        qkv_bias=model_type in ("qwen2", "qwen2_vl", "qwen2_5_vl"),
        tied=tied,
        cross_layers=cross,
    )
    vision_cfg = config.get("vision_config")
    if not vision_cfg:
        return ModelShape(model_type, text, None)
    if model_type == "mllama":
        width = vision_cfg.get("hidden_size", 1280)
        vision = VisionShape(
            family="mllama",
            hidden=width,
            layers=vision_cfg.get("num_hidden_layers", 32),
            heads=vision_cfg.get("attention_heads", 16),
            intermediate=vision_cfg.get("intermediate_size", 5120),
            patch=vision_cfg.get("patch_size", 14),
            out=hidden,
            global_layers=vision_cfg.get("num_global_layers", 8),
            image_size=vision_cfg.get("image_size", 560),
            max_tiles=vision_cfg.get("max_num_tiles", 4),
            aspect_ratios=len(vision_cfg.get("supported_aspect_ratios") or [0] * 8),
            output_dim=vision_cfg.get("vision_output_dim", 7680),
        )
    elif model_type == "qwen2_vl":
        width = vision_cfg.get("embed_dim", 1280)
        vision = VisionShape(
            family="qwen2_vl",
            hidden=width,
            layers=vision_cfg.get("depth", 32),
            heads=vision_cfg.get("num_heads", 16),
            intermediate=width * vision_cfg.get("mlp_ratio", 4),
            patch=vision_cfg.get("patch_size", 14),
            out=vision_cfg.get("hidden_size", hidden),
            merge=vision_cfg.get("spatial_merge_size", 2),
            temporal_patch=vision_cfg.get("temporal_patch_size", 2),
        )
    elif model_type == "qwen2_5_vl":
        patch = vision_cfg.get("patch_size", 14)
        vision = VisionShape(
            family="qwen2_5_vl",
            hidden=vision_cfg.get("hidden_size", 1280),
            layers=vision_cfg.get("depth", 32),
            heads=vision_cfg.get("num_heads", 16),
            intermediate=vision_cfg.get("intermediate_size", 3420),
            patch=patch,
            out=vision_cfg.get("out_hidden_size", hidden),
            merge=vision_cfg.get("spatial_merge_size", 2),
            temporal_patch=vision_cfg.get("temporal_patch_size", 2),
            window=vision_cfg.get("window_size", 112) // patch,
            full_layers=tuple(vision_cfg.get("fullatt_block_indexes", [7, 15, 23, 31])),
        )
    else:
        raise ArchitectureUnknown(
            f"model_type {model_type!r}: the FLOP model knows mllama, qwen2_vl, qwen2_5_vl "
            "and text-only qwen2/llama"
        )
    return ModelShape(model_type, text, vision)
