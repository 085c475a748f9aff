"""A tiny random-initialised Qwen2-VL, built locally so the default pipeline downloads nothing.

The folder it writes is a standard Hugging Face checkpoint: safetensors weights, config,
generation config, a byte-level BPE tokenizer trained on the task's own text, the Qwen2-VL image
and video processors and a chat template that renders exactly LLaMA-Factory's ``qwen2_vl``
template, so training (LLaMA-Factory) and generation (``sherlock.data.chat``) see the same tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    Qwen2Tokenizer,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from sherlock.data.response import STAGES

PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
DEFAULT_SYSTEM = "You are a helpful assistant."
REFINE_PROMPT_PATH = Path(__file__).parents[1] / "data" / "prompts" / "refine.txt"

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

# Qwen2's pre-tokenisation regex (transformers' Qwen2Tokenizer): a reloaded Qwen2Tokenizer
# rebuilds its pipeline from vocab + merges with this regex, so training must use the same one.
_QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Renders LLaMA-Factory 0.9.5's `qwen2_vl` template (data/template.py) with its qwen2_vl mm plugin
# collapsed to one <|image_pad|> per image (the processor expands it to the image's grid):
# system turn (default "You are a helpful assistant."), "<|im_start|>user\n…<|im_end|>\n",
# "<|im_start|>assistant\n", assistant turns closed by "<|im_end|>\n". Content may be a string
# (with "<image>" placeholders, as in ShareGPT records) or a list of typed parts.
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


def refine_prompt_text() -> str:
    """The published REFINE prompt (its words belong in the tokenizer's training corpus)."""
    return REFINE_PROMPT_PATH.read_text(encoding="utf-8")


def corpus_from_jsonl(paths: Iterable[Path | str], extra_texts: Iterable[str] = ()) -> list[str]:
    """Every turn of LLaVA-CoT / ShareGPT JSONL records, ``<image>`` removed, plus extra texts."""
    texts: list[str] = []
    for path in paths:
        with Path(path).open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                for turn in json.loads(line).get("conversations", []):
                    texts.append(turn["value"].replace("<image>", ""))
    texts.extend(extra_texts)
    return texts


def _scaffold_texts() -> list[str]:
    """Text the chat template and the tasks always add, so it tokenizes compactly too."""
    stage_tags = "".join(f"<{tag}></{tag}>" for tag in STAGES)
    scaffold = [f"system\n{DEFAULT_SYSTEM}\n", "user\n", "assistant\n", stage_tags]
    return [*scaffold, refine_prompt_text()]


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> Qwen2Tokenizer:
    """A byte-level BPE tokenizer with Qwen2's pipeline and special tokens, trained on ``corpus``.

    Byte level (full 256-byte alphabet) so any text round-trips; the special tokens come first
    (ids 0–6) and never take part in merges; no merge involves "<" (see below).
    """
    backend = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # Training only: "<" is kept out of every merge, so a tag's "<" is always a token
            # of its own. Then a response cut at a stage boundary ("…</SUMMARY>" + "<CAPTION>…")
            # tokenizes as prefix tokens + suffix tokens, exactly as the whole response does
            # (Qwen's regex makes "><" one pre-token; a "><" merge would straddle the cut).
            pre_tokenizers.Split("<", behavior="isolated"),
            pre_tokenizers.Split(Regex(_QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def texts() -> Iterator[str]:
        yield from corpus
        yield from _scaffold_texts()

    backend.train_from_iterator(texts(), trainer=trainer)
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    # Built the way from_pretrained rebuilds it (vocab + merges into Qwen2Tokenizer's own
    # pipeline), so the saved tokenizer behaves identically after a reload.
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
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


def build_tiny_vlm(
    out_dir: Path,
    corpus: Iterable[str],
    *,
    seed: int,
    image_size: int,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    intermediate_size: int | None = None,
    num_layers: int = 2,
    num_heads: int = 4,
    vision_depth: int = 2,
    vision_embed_dim: int = 32,
    vision_num_heads: int = 2,
    max_position_embeddings: int = 4096,
) -> dict[str, Any]:
    """Write a random-initialised Qwen2-VL checkpoint with a tokenizer trained on ``corpus``.

    Every image is resized to ``image_size``² pixels (a multiple of 28), i.e. a grid of
    (image_size/14)² patches and (image_size/28)² image tokens. Returns a summary: parameter
    count, vocabulary size, image grid and tokens per image.
    """
    factor = PATCH_SIZE * MERGE_SIZE
    if image_size % factor:
        raise ValueError(f"image_size must be a multiple of {factor}, got {image_size}")
    if hidden_size % num_heads or (hidden_size // num_heads) % 8:
        raise ValueError("hidden_size / num_heads must be a multiple of 8 (multimodal rotary)")
    if vision_embed_dim % vision_num_heads or (vision_embed_dim // vision_num_heads) % 4:
        raise ValueError("vision_embed_dim / vision_num_heads must be a multiple of 4")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(corpus, vocab_size)
    ids = special_token_ids(tokenizer)

    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size or 4 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_heads,
            "max_position_embeddings": max_position_embeddings,
            "max_window_layers": num_layers,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": _mrope_section(hidden_size // num_heads),
            },
            "bos_token_id": ids[ENDOFTEXT],
            "eos_token_id": ids[IM_END],
            "pad_token_id": ids[ENDOFTEXT],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": vision_depth,
            "embed_dim": vision_embed_dim,
            "hidden_size": hidden_size,  # the merger projects straight into the text width
            "num_heads": vision_num_heads,
            "mlp_ratio": 4,
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        },
        image_token_id=ids[IMAGE_PAD],
        video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START],
        vision_end_token_id=ids[VISION_END],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids[ENDOFTEXT],
        eos_token_id=ids[IM_END],
        pad_token_id=ids[ENDOFTEXT],
        do_sample=False,
    )
    n_params = count_parameters(model)

    pixels = image_size * image_size
    # min = max = image_size² pins every (square) image to the same small grid.
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": pixels, "longest_edge": pixels},
        patch_size=PATCH_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        merge_size=MERGE_SIZE,
    )
    video_processor = Qwen2VLVideoProcessor(
        size={"shortest_edge": pixels, "longest_edge": 4 * pixels},
        patch_size=PATCH_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        merge_size=MERGE_SIZE,
    )
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )

    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    grid = image_size // PATCH_SIZE
    summary = {
        "parameters": n_params,
        "vocab_size": len(tokenizer),
        "image_size": image_size,
        "image_grid_thw": [1, grid, grid],
        "image_tokens": (grid // MERGE_SIZE) ** 2,
        "seed": seed,
    }
    (out_dir / "tiny_model.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters of a model (all of them, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def special_token_ids(tokenizer: Any, tokens: Sequence[str] = SPECIAL_TOKENS) -> dict[str, int]:
    """Ids of the named special tokens in a tokenizer."""
    return {token: tokenizer.convert_tokens_to_ids(token) for token in tokens}
