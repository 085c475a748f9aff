"""Shared fixtures: a small synthetic dataset and tiny models built from it (once a session)."""

from __future__ import annotations

import os

# Tests never touch the network: set before transformers / huggingface_hub read them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

IMAGE_SIZE = 56
SEED = 7


@pytest.fixture(scope="session")
def image_size() -> int:
    return IMAGE_SIZE


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sherlock.embedded.synthetic import build_synthetic_dataset

    out = tmp_path_factory.mktemp("synthetic")
    build_synthetic_dataset(out, n_train=40, n_test=12, image_size=IMAGE_SIZE, seed=SEED)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, synthetic_dir: Path) -> tuple[Path, dict]:
    """The tiny model folder and the summary ``build_tiny_vlm`` returned."""
    from sherlock.embedded.tiny_model import build_tiny_vlm, corpus_from_jsonl

    out = tmp_path_factory.mktemp("tiny_model")
    corpus = corpus_from_jsonl([synthetic_dir / "train.jsonl"])
    summary = build_tiny_vlm(out, corpus, seed=SEED, image_size=IMAGE_SIZE)
    return out, summary


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory, synthetic_dir: Path):
    """Builds (once a session) the tiny model of an architecture: ``tiny_vlm("mllama")``."""
    from sherlock.embedded.tiny_model import build_tiny_vlm, corpus_from_jsonl

    built: dict[str, Path] = {}

    def build(architecture: str) -> Path:
        if architecture not in built:
            out = tmp_path_factory.mktemp(f"tiny_{architecture}")
            corpus = corpus_from_jsonl([synthetic_dir / "train.jsonl"])
            build_tiny_vlm(out, corpus, seed=SEED, image_size=IMAGE_SIZE, architecture=architecture)
            built[architecture] = out
        return built[architecture]

    return build


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model: tuple[Path, dict]) -> Path:
    return tiny_model[0]


@pytest.fixture(scope="session")
def records(synthetic_dir: Path) -> list[dict]:
    import json

    lines = (synthetic_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="session")
def tiny_text_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A tiny random Qwen2 causal LM with the tiny tokenizer and its chat template: a text model
    for the llm judge's plumbing (not its verdicts)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny_text_model")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
