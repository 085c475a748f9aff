"""A base model's architecture built with random weights directly on the device, and a processor.

Nothing is downloaded. The model is the family's transformers class built from the config.json
(``sherlock.gpucheck.architectures``) under ``torch.device(device)`` in the given dtype, at real
size or shrunk to a toy of the same family (``toy_config``, for ``--smoke`` on a CPU).

The processor is the model's own when its files are on this machine (a local folder, or the
Hugging Face cache); otherwise a stand-in of the family: its image processor at the run's image
size and a small tokenizer trained on synthetic LLaVA-CoT-style text with the family's special
tokens and chat template (``sherlock.embedded``). The model's special-token ids are set to the
stand-in's, its vocabulary keeps its real size (so the embeddings and the LM head cost what they
cost), and generation never picks an id the stand-in cannot decode (``suppress_tokens``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from sherlock.embedded import mllama, qwen_vl

TOY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
TOY_IMAGE = 56  # pixels a side of a toy model's images (Mllama: its tile)
STANDIN_VOCAB = 1024


def toy_config(config: dict[str, Any]) -> dict[str, Any]:
    """The same family at toy size: a few layers of width 64, a vision tower of width 32."""
    config = copy.deepcopy(config)
    model_type = config["model_type"]
    nested = "text_config" in config
    text = config.setdefault("text_config", {}) if nested else config
    text.update(TOY_TEXT)
    text.pop("head_dim", None)
    vision = config["vision_config"]
    if model_type == "mllama":
        text.update(num_hidden_layers=3, cross_attention_layers=[1])
        vision.update(
            hidden_size=32,
            num_hidden_layers=2,
            num_global_layers=1,
            attention_heads=2,
            intermediate_size=64,
            intermediate_layers_indices=[0],
            vision_output_dim=64,
            image_size=TOY_IMAGE,
        )
    else:
        text.update(num_hidden_layers=2, max_window_layers=2)
        if model_type == "qwen2_vl":
            vision.update(depth=2, embed_dim=32, num_heads=2, hidden_size=TOY_TEXT["hidden_size"])
        else:
            vision.update(
                depth=2,
                hidden_size=32,
                intermediate_size=64,
                num_heads=2,
                out_hidden_size=TOY_TEXT["hidden_size"],
                fullatt_block_indexes=[1],
            )
        rope = config.get("rope_scaling") or text.get("rope_parameters")
        if rope and "mrope_section" in rope:
            rope["mrope_section"] = qwen_vl._mrope_section(16)  # head_dim 64 / 4
    return config


def corpus(records: int = 64, seed: int = 0) -> list[str]:
    """Synthetic LLaVA-CoT-style questions and answers (a stand-in tokenizer's training text)."""
    from sherlock.embedded.synthetic import make_record

    texts = []
    for index in range(records):
        record, _ = make_record(index, "train", seed, TOY_IMAGE)
        texts += [turn["value"].replace("<image>", "") for turn in record["conversations"]]
    return texts


def standin_processor(
    config: dict[str, Any], min_pixels: int, max_pixels: int, vocab: int = STANDIN_VOCAB
) -> Any:
    """The family's processor with a small trained tokenizer (see the module docstring)."""
    from transformers import (
        MllamaImageProcessor,
        MllamaProcessor,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    texts = corpus()
    model_type = config["model_type"]
    if model_type == "mllama":
        vision = config["vision_config"]
        tile = vision.get("image_size", 560)
        return MllamaProcessor(
            image_processor=MllamaImageProcessor(
                size={"height": tile, "width": tile},
                max_image_tiles=vision.get("max_num_tiles", 4),
            ),
            tokenizer=mllama.train_tokenizer(texts, vocab),
            chat_template=mllama.CHAT_TEMPLATE,
        )
    patches = {
        "patch_size": qwen_vl.PATCH_SIZE,
        "temporal_patch_size": qwen_vl.TEMPORAL_PATCH_SIZE,
        "merge_size": qwen_vl.MERGE_SIZE,
    }
    processor_class = Qwen2VLProcessor if model_type == "qwen2_vl" else Qwen2_5_VLProcessor
    return processor_class(
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, **patches
        ),
        tokenizer=qwen_vl.train_tokenizer(texts, vocab),
        video_processor=Qwen2VLVideoProcessor(
            size={"shortest_edge": min_pixels, "longest_edge": 4 * max_pixels}, **patches
        ),
        chat_template=qwen_vl.CHAT_TEMPLATE,
    )


def local_processor(path: str) -> Any | None:
    """The model's own processor when its files are on this machine (no download), else None."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        return None


def with_token_ids(
    config: dict[str, Any], processor: Any, real_vocab: bool = True
) -> dict[str, Any]:
    """``config`` with the special-token ids of ``processor``'s tokenizer (a stand-in's); the
    vocabulary keeps its real size, or (a toy) shrinks to the tokenizer's."""
    config = copy.deepcopy(config)
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    text = config.setdefault("text_config", {}) if "text_config" in config else config
    if config["model_type"] == "mllama":
        config["image_token_index"] = ids(mllama.IMAGE)
        text.update(
            bos_token_id=ids(mllama.BEGIN_OF_TEXT),
            eos_token_id=ids(mllama.EOT),
            pad_token_id=ids(mllama.PAD),
        )
    else:
        config.update(
            image_token_id=ids(qwen_vl.IMAGE_PAD),
            video_token_id=ids(qwen_vl.VIDEO_PAD),
            vision_start_token_id=ids(qwen_vl.VISION_START),
            vision_end_token_id=ids(qwen_vl.VISION_END),
        )
        text.update(
            bos_token_id=ids(qwen_vl.ENDOFTEXT),
            eos_token_id=ids(qwen_vl.IM_END),
            pad_token_id=ids(qwen_vl.ENDOFTEXT),
        )
    vocab = len(tokenizer)
    text["vocab_size"] = max(text.get("vocab_size", 0), vocab) if real_vocab else vocab
    return config


def build_model(
    config: dict[str, Any],
    processor: Any,
    device: str | torch.device,
    dtype: torch.dtype,
    attention: str = "sdpa",
    seed: int = 0,
) -> Any:
    """The architecture with random weights, made on ``device`` in ``dtype``; generation stops
    at the tokenizer's end of turn and picks only ids the tokenizer has."""
    from transformers import CONFIG_MAPPING, AutoModelForImageTextToText, GenerationConfig

    settings = {k: v for k, v in config.items() if k != "model_type"}
    model_config = CONFIG_MAPPING[config["model_type"]](**settings)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(
            model_config, dtype=dtype, attn_implementation=attention
        )
    tokenizer = processor.tokenizer
    vocab = model.get_output_embeddings().weight.shape[0]
    eos = tokenizer.convert_tokens_to_ids(
        mllama.EOT if config["model_type"] == "mllama" else qwen_vl.IM_END
    )
    model.generation_config = GenerationConfig(
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=list(range(len(tokenizer), vocab)) or None,
    )
    return model.eval()
