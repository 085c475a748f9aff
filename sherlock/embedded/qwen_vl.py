"""Tiny Qwen2-VL and Qwen2.5-VL: Qwen's special tokens, chat template, tokenizer and configs.

The two share the tokenizer layout, the chat template (LLaMA-Factory's ``qwen2_vl`` template
serves both) and the image processor; they differ in the vision tower (Qwen2.5-VL: window
attention, an RMS-normed SwiGLU tower with its own output width) and the processor class.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from sherlock.embedded.tokenizer import task_scaffold, train_bpe, vocab_and_merges

PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
IMAGE_FACTOR = PATCH_SIZE * MERGE_SIZE
DEFAULT_SYSTEM = "You are a helpful assistant."

# The Qwen2-VL special tokens the processor, the model config and LLaMA-Factory look up by name.
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
SPECIAL_TOKENS: tuple[str, ...] = (
    ENDOFTEXT,
    IM_START,
    IM_END,
    VISION_START,
    VISION_END,
    IMAGE_PAD,
    VIDEO_PAD,
)

# Renders LLaMA-Factory 0.9.5's `qwen2_vl` template (data/template.py) with its qwen2_vl mm plugin
# collapsed to one <|image_pad|> per image (the processor expands it to the image's grid):
# system turn (default "You are a helpful assistant."), "<|im_start|>user\n…<|im_end|>\n",
# "<|im_start|>assistant\n", assistant turns closed by "<|im_end|>\n". Content may be a string
# (with "<image>" placeholders, as in ShareGPT records) or a list of typed parts. No BOS: Qwen
# writes none.
CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}"
    "{{- content | replace('<image>', '<|vision_start|><|image_pad|><|vision_end|>')"
    " | replace('<video>', '<|vision_start|><|video_pad|><|vision_end|>') -}}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    # As in LLaMA-Factory, an empty system message falls back to the default one.
    "{%- set system_message = '" + DEFAULT_SYSTEM + "' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] -%}{%- set system_message = render(messages[0]['content']) -%}"
    "{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>system\\n' + system_message + '<|im_end|>\\n' -}}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '<|im_start|>user\\n' + render(message['content']) + '<|im_end|>\\n' -}}"
    # LLaMA-Factory's format_user already opens the assistant turn after every user turn.
    "{%- if not loop.last or add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- render(message['content']) + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> Qwen2Tokenizer:
    """A byte-level BPE with Qwen2's special tokens (ids 0–6), trained on ``corpus``."""
    scaffold = [f"system\n{DEFAULT_SYSTEM}\n", "user\n", "assistant\n", *task_scaffold()]
    vocab, merges = vocab_and_merges(train_bpe(corpus, vocab_size, SPECIAL_TOKENS, scaffold))
    # Built the way from_pretrained rebuilds it (vocab + merges into Qwen2Tokenizer's own
    # pipeline), so the saved tokenizer behaves identically after a reload.
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        extra_special_tokens=[IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD],
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) like Qwen2-VL's 16/24/24."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _text_config(size: dict[str, int], ids: dict[str, int], vocab: int) -> dict[str, Any]:
    hidden, heads, layers = size["hidden_size"], size["num_heads"], size["num_layers"]
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "max_position_embeddings": 4096,
        "max_window_layers": layers,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": _mrope_section(hidden // heads),
        },
        "bos_token_id": ids[ENDOFTEXT],
        "eos_token_id": ids[IM_END],
        "pad_token_id": ids[ENDOFTEXT],
        "tie_word_embeddings": False,
    }


def _token_ids(tokenizer: Any) -> dict[str, int]:
    return {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}


def check_size(size: dict[str, int], image_size: int) -> None:
    """Refuse sizes the Qwen-VL classes cannot build, before anything is written."""
    if image_size % IMAGE_FACTOR:
        raise ValueError(f"image_size must be a multiple of {IMAGE_FACTOR}, got {image_size}")
    if size["hidden_size"] % size["num_heads"] or (size["hidden_size"] // size["num_heads"]) % 8:
        raise ValueError("hidden_size / num_heads must be a multiple of 8 (multimodal rotary)")
    if size["vision_embed_dim"] % 2 or (size["vision_embed_dim"] // 2) % 4:
        raise ValueError("vision_embed_dim / 2 (vision heads) must be a multiple of 4")


def build(
    architecture: str, corpus: Iterable[str], size: dict[str, int], image_size: int, seed: int
) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """A random Qwen2-VL or Qwen2.5-VL, its processor, and the image layout for the summary."""
    check_size(size, image_size)
    tokenizer = train_tokenizer(corpus, size["vocab_size"])
    ids = _token_ids(tokenizer)
    vision = {
        "depth": size["vision_depth"],
        "num_heads": 2,
        "patch_size": PATCH_SIZE,
        "spatial_merge_size": MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
    }
    common = {
        "text_config": _text_config(size, ids, len(tokenizer)),
        "image_token_id": ids[IMAGE_PAD],
        "video_token_id": ids[VIDEO_PAD],
        "vision_start_token_id": ids[VISION_START],
        "vision_end_token_id": ids[VISION_END],
        "tie_word_embeddings": False,
    }
    if architecture == "qwen2_vl":
        vision |= {"embed_dim": size["vision_embed_dim"], "mlp_ratio": 4}
        # The merger projects straight into the text width.
        vision["hidden_size"] = size["hidden_size"]
        config = Qwen2VLConfig(vision_config=vision, **common)
        model_class, processor_class = Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    else:
        vision |= {
            "hidden_size": size["vision_embed_dim"],
            "intermediate_size": 4 * size["vision_embed_dim"],
            "out_hidden_size": size["hidden_size"],
            # One window (112 px = 4 × 4 merged patches) per 56-px image; the last block attends
            # over the whole image, as Qwen2.5-VL's full-attention blocks do.
            "window_size": 112,
            "fullatt_block_indexes": [size["vision_depth"] - 1],
        }
        config = Qwen2_5_VLConfig(vision_config=vision, **common)
        model_class, processor_class = Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids[ENDOFTEXT],
        eos_token_id=ids[IM_END],
        pad_token_id=ids[ENDOFTEXT],
        do_sample=False,
    )
    pixels = image_size * image_size
    # min = max = image_size² pins every (square) image to the same small grid.
    patches = {
        "patch_size": PATCH_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "merge_size": MERGE_SIZE,
    }
    processor = processor_class(
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": pixels, "longest_edge": pixels}, **patches
        ),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(
            size={"shortest_edge": pixels, "longest_edge": 4 * pixels}, **patches
        ),
        chat_template=CHAT_TEMPLATE,
    )
    grid = image_size // PATCH_SIZE
    layout = {"image_grid_thw": [1, grid, grid], "image_tokens": (grid // MERGE_SIZE) ** 2}
    return model, processor, layout
