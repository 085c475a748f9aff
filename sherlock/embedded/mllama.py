"""Tiny Llama-3.2-Vision (transformers' Mllama): Llama 3's special tokens, chat template,
tokenizer and a random model with cross-attention image layers.

As with Llama 3, the BOS is written twice over: by the chat template (``{{ bos_token }}``) and
by the tokenizer's post-processor when special tokens are added. Whoever tokenizes a rendered
prompt must therefore not add special tokens again (``sherlock.data.chat.tokenize_kwargs``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from tokenizers import processors
from transformers import (
    GenerationConfig,
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaImageProcessor,
    MllamaProcessor,
    PreTrainedTokenizerFast,
)

from sherlock.embedded.tokenizer import task_scaffold, train_bpe

PATCH_SIZE = 14
MAX_TILES = 4  # transformers' default aspect ratios require four tiles

BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
PAD = "<|finetune_right_pad_id|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOM = "<|eom_id|>"
EOT = "<|eot_id|>"
PYTHON_TAG = "<|python_tag|>"
IMAGE = "<|image|>"
SPECIAL_TOKENS: tuple[str, ...] = (
    BEGIN_OF_TEXT,
    END_OF_TEXT,
    PAD,
    START_HEADER,
    END_HEADER,
    EOM,
    EOT,
    PYTHON_TAG,
    IMAGE,
)

# The structure of Llama-3.2-Vision-Instruct's published template, as LLaMA-Factory 0.9.5's
# `mllama` template encodes it: the BOS, no system turn unless one is given, each turn
# "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>", an image part as
# "<|image|>" (a ShareGPT "<image>" too), and the generation prompt opening the assistant header.
CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{- content | replace('<image>', '<|image|>') -}}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|image|>' -}}"
    "{%- elif 'text' in part -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] != 'system' or message['content'] -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' -}}"
    "{{- render(message['content']) + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}"
    "{%- endif -%}"
)


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE with Llama 3's special tokens whose post-processor adds the BOS."""
    scaffold = ["user\n\n", "assistant\n\n", "system\n\n", *task_scaffold()]
    backend = train_bpe(corpus, vocab_size, SPECIAL_TOKENS, scaffold)
    bos_id = backend.token_to_id(BEGIN_OF_TEXT)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BEGIN_OF_TEXT} $A",
        pair=f"{BEGIN_OF_TEXT} $A {BEGIN_OF_TEXT} $B",
        special_tokens=[(BEGIN_OF_TEXT, bos_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BEGIN_OF_TEXT,
        eos_token=EOT,
        pad_token=PAD,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def check_size(size: dict[str, int], image_size: int) -> None:
    """Refuse sizes the Mllama classes cannot build, before anything is written."""
    if image_size % PATCH_SIZE:
        raise ValueError(f"image_size must be a multiple of {PATCH_SIZE}, got {image_size}")
    if size["hidden_size"] % size["num_heads"]:
        raise ValueError("hidden_size must be a multiple of num_heads")
    if size["num_layers"] < 2:
        raise ValueError("an Mllama text model needs num_layers >= 2 (one cross-attention layer)")


def build(
    corpus: Iterable[str], size: dict[str, int], image_size: int, seed: int
) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """A random Mllama, its processor (tiles of image_size² pixels), and the image layout."""
    check_size(size, image_size)
    tokenizer = train_tokenizer(corpus, size["vocab_size"])
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    vision_width = size["vision_embed_dim"]
    layers = size["num_layers"]
    config = MllamaConfig(
        vision_config={
            "hidden_size": vision_width,
            "num_hidden_layers": size["vision_depth"],
            "num_global_layers": 1,
            "attention_heads": 2,
            "intermediate_size": 4 * vision_width,
            # The tower's output: the last hidden state and one intermediate layer's, stacked.
            "intermediate_layers_indices": [0],
            "vision_output_dim": 2 * vision_width,
            "image_size": image_size,
            "patch_size": PATCH_SIZE,
            "max_num_tiles": MAX_TILES,
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": size["hidden_size"],
            "intermediate_size": 4 * size["hidden_size"],
            "num_hidden_layers": layers,
            "num_attention_heads": size["num_heads"],
            "num_key_value_heads": size["num_heads"],
            # Self-attention first, then every other layer reads the image (11B: 8 of 40).
            "cross_attention_layers": list(range(1, layers, 2)),
            "max_position_embeddings": 4096,
            "bos_token_id": ids[BEGIN_OF_TEXT],
            "eos_token_id": ids[EOT],
            "pad_token_id": ids[PAD],
            "tie_word_embeddings": False,
        },
        image_token_index=ids[IMAGE],
    )
    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BEGIN_OF_TEXT],
        eos_token_id=[ids[END_OF_TEXT], ids[EOM], ids[EOT]],
        pad_token_id=ids[PAD],
        do_sample=False,
    )
    processor = MllamaProcessor(
        image_processor=MllamaImageProcessor(
            size={"height": image_size, "width": image_size}, max_image_tiles=MAX_TILES
        ),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    layout = {"tile_size": image_size, "max_tiles": MAX_TILES, "image_tokens": 1}
    return model, processor, layout
