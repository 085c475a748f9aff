"""The tiny models: size, offline loading, a forward pass, tokenizer and chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    Qwen2VLForConditionalGeneration,
)

from sherlock.data.chat import render_prompt
from sherlock.data.response import STAGES
from sherlock.embedded.qwen_vl import SPECIAL_TOKENS
from sherlock.embedded.tiny_model import build_tiny_vlm, corpus_from_jsonl


def test_parameter_count_and_summary(tiny_model: tuple[Path, dict]) -> None:
    folder, summary = tiny_model
    assert summary["parameters"] < 5_000_000
    assert summary["image_grid_thw"] == [1, 4, 4] and summary["image_tokens"] == 4
    assert json.loads((folder / "tiny_model.json").read_text()) == summary
    model = Qwen2VLForConditionalGeneration.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) == summary["parameters"]
    assert model.config.text_config.vocab_size == summary["vocab_size"]


def test_folder_is_a_standard_checkpoint(tiny_model_dir: Path) -> None:
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json"):
        assert (tiny_model_dir / name).is_file(), name
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    tokenizer = processor.tokenizer
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    gen = model.generation_config
    assert gen.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert gen.pad_token_id == tokenizer.pad_token_id
    config = model.config
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert config.vision_end_token_id == tokenizer.convert_tokens_to_ids("<|vision_end|>")
    assert config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")


def test_forward_pass_on_image_and_text(
    tiny_model_dir: Path, synthetic_dir: Path, records: list[dict]
) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    record = records[0]
    prompt = render_prompt(processor, "\nWhat colour is the circle?")
    with Image.open(synthetic_dir / record["image"]) as image:
        inputs = processor(text=[prompt], images=[image.convert("RGB")], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_pad).sum()) == 4
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()


def test_tokenizer_round_trips_and_is_compact(tiny_model_dir: Path, records: list[dict]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = [
        records[0]["conversations"][1]["value"],
        "<SUMMARY> odd text: naïve café, 12345, tabs\tand\nnewlines, emoji 🙂 </SUMMARY>",
        "".join(f"<{tag}>x</{tag}>" for tag in STAGES),
    ]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids) == text
    # Each special token is one id and survives decoding unless skipped.
    for token in SPECIAL_TOKENS:
        assert len(tokenizer(token, add_special_tokens=False).input_ids) == 1
    ids = tokenizer("<|im_start|>assistant\nhi<|im_end|>", add_special_tokens=False).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "assistant\nhi"
    # Trained on the task text: a whole four-stage answer is a few dozen tokens, not hundreds.
    answer = records[0]["conversations"][1]["value"]
    assert len(tokenizer(answer).input_ids) < len(answer) / 2.5


def test_chat_template_text(tiny_model_dir: Path) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    expected = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>\nHow many?<|im_end|>\n"
        "<|im_start|>assistant\n<SUMMARY>"
    )
    assert render_prompt(processor, "\nHow many?", "<SUMMARY>") == expected
    # The same text from the tokenizer's copy of the template, and a full conversation.
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "<image>Q?"},
        {"role": "assistant", "content": "A."},
    ]
    text = processor.tokenizer.apply_chat_template(conversation, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n"
    )


def test_build_is_deterministic(tmp_path: Path, tiny_model_dir: Path, synthetic_dir: Path) -> None:
    corpus = corpus_from_jsonl([synthetic_dir / "train.jsonl"])
    summary = build_tiny_vlm(tmp_path, corpus, seed=7, image_size=56)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (tmp_path / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name
    assert summary["parameters"] < 5_000_000
    with pytest.raises(ValueError, match="multiple of 28"):
        build_tiny_vlm(tmp_path / "bad", corpus, seed=7, image_size=50)


def test_stage_boundaries_split_cleanly(tiny_model_dir: Path, records: list[dict]) -> None:
    """Cut at a stage boundary, prefix ids + suffix ids == the whole response's ids, so a
    pre-filled prefix puts the model exactly where training on the whole response did."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    vocab = tokenizer.get_vocab()
    assert not [t for t in vocab if "<" in t and t != "<" and t not in SPECIAL_TOKENS]
    for record in records[:8]:
        response = record["conversations"][1]["value"]
        whole = tokenizer(response, add_special_tokens=False).input_ids
        for tag in STAGES:
            cut = response.index(f"<{tag}>")
            head = tokenizer(response[:cut], add_special_tokens=False).input_ids
            tail = tokenizer(response[cut:], add_special_tokens=False).input_ids
            assert head + tail == whole, (record["id"], tag)


@pytest.mark.parametrize(
    ("architecture", "model_class", "processor_class"),
    [
        ("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
        ("mllama", "MllamaForConditionalGeneration", "MllamaProcessor"),
    ],
)
def test_other_architectures_load_run_and_generate(
    architecture: str, model_class: str, processor_class: str, tiny_vlm, synthetic_dir: Path
) -> None:
    """Qwen2.5-VL and Llama-3.2-Vision (Mllama) build as their transformers classes, with their
    processors, and answer an image question through the Auto classes."""
    folder = tiny_vlm(architecture)
    summary = json.loads((folder / "tiny_model.json").read_text())
    assert summary["architecture"] == architecture and summary["parameters"] < 5_000_000
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    assert type(model).__name__ == model_class and type(processor).__name__ == processor_class
    assert sum(p.numel() for p in model.parameters()) == summary["parameters"]
    prompt = render_prompt(processor, "\nWhat colour is the circle?")
    with Image.open(next(synthetic_dir.glob("images/*.png"))) as image:
        inputs = processor(
            text=[prompt],
            images=[[image.convert("RGB")]],
            add_special_tokens=False,
            return_tensors="pt",
        )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4 or out[0, -1] in (
        model.generation_config.eos_token_id
        if isinstance(model.generation_config.eos_token_id, list)
        else [model.generation_config.eos_token_id]
    )
    if architecture == "mllama":
        # Llama 3's layout: the tokenizer adds the BOS, the template writes it too.
        tokenizer = processor.tokenizer
        assert tokenizer("x").input_ids[0] == tokenizer.bos_token_id
        assert prompt.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
        assert inputs["cross_attention_mask"].shape[-1] == summary["max_tiles"]
    else:
        assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
