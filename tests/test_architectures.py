"""Every stage's model code on each tiny architecture: Qwen2-VL's sibling Qwen2.5-VL and the
paper's Llama-3.2-Vision (Mllama), in float32 and in bfloat16 (the presets' dtype) on the CPU.

The equality of the token sequences across encoders is tests/test_template_equality.py; here the
Sherlock trainer trains each architecture and the generation backend answers with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from defaults import coefficients_of, perturbation, training_args  # noqa: E402
from test_pref_training import make_examples  # noqa: E402
from transformers import AutoModelForImageTextToText, AutoProcessor

from sherlock.data.prompts import load_prompt
from sherlock.generation.base import GenerationRequest, SamplingParams
from sherlock.generation.hf import TransformersBackend
from sherlock.preference.trainer import PreferenceCollator, PreferenceDataset, SherlockTrainer

REFINE = load_prompt("refine")
CONFIG = coefficients_of(perturbation({"recipe": "reference"}), 0.1, 0.025)


def _train(
    folder: Path, out: Path, examples, dtype: torch.dtype, epochs: int, freeze: bool = False
) -> SherlockTrainer:
    processor = AutoProcessor.from_pretrained(folder)
    args = training_args(
        out,
        bf16=dtype == torch.bfloat16,
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        num_train_epochs=epochs,
        lr_scheduler_type="constant",
        logging_steps=1,
        seed=3,
        freeze_vision_tower=freeze,
        freeze_multi_modal_projector=freeze,
        freeze_language_model=False,
    )
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype)
    trainer = SherlockTrainer(
        model=model,
        args=args,
        train_dataset=PreferenceDataset(examples, processor, REFINE, CONFIG, None),
        data_collator=PreferenceCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,
    )
    trainer.train()
    return trainer


def test_sherlock_training_of_mllama_lowers_the_loss(
    tiny_vlm, tmp_path: Path, records: list[dict], synthetic_dir: Path
) -> None:
    """The paper's architecture, trained as the paper preset trains it (vision tower and
    projector frozen): the loss falls, the frozen weights stay bit-identical, the rest moves."""
    examples = make_examples(records, synthetic_dir, 4)
    folder = tiny_vlm("mllama")
    before = AutoModelForImageTextToText.from_pretrained(folder).state_dict()
    trainer = _train(folder, tmp_path, examples, torch.float32, epochs=6, freeze=True)
    after = trainer.model.state_dict()
    frozen = [n for n in after if "vision_model" in n or "multi_modal_projector" in n]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    moved = [n for n in after if n not in frozen and not torch.equal(before[n], after[n])]
    assert any("cross_attn" in n for n in moved) and any("lm_head" in n for n in moved)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 6
    assert logs[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4)  # policy = reference
    assert sum(e["loss"] for e in logs[-2:]) / 2 < 0.8 * logs[0]["loss"]
    assert logs[-1]["rewards/margins"] > 0


@pytest.mark.parametrize("architecture", ["qwen2_5_vl", "mllama"])
def test_bfloat16_training_and_generation_on_the_cpu(
    architecture: str, tiny_vlm, tmp_path: Path, records: list[dict], synthetic_dir: Path
) -> None:
    """The presets' dtype: weights loaded in bfloat16, the trainer's bf16 mode, and generation
    in bfloat16 through the backend every generating job uses."""
    folder = tiny_vlm(architecture)
    examples = make_examples(records, synthetic_dir, 4)
    trainer = _train(folder, tmp_path, examples, torch.bfloat16, epochs=1)
    assert {p.dtype for p in trainer.model.parameters()} == {torch.bfloat16}
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and all(torch.isfinite(torch.tensor(e["loss"])) for e in logs)
    backend = TransformersBackend(str(folder), device="cpu", dtype="bfloat16", progress=False)
    assert backend.model.dtype == torch.bfloat16
    requests = [
        GenerationRequest(e.id, e.image, e.question, prefix)
        for e in examples
        for prefix in ("", e.prefix)
    ]
    sampling = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=6, seed=1)
    texts = backend.generate(requests, sampling)
    assert len(texts) == len(requests) and all(isinstance(t, str) for t in texts)
    # Greedy bfloat16 generation is deterministic batch by batch.
    assert backend.generate(requests, sampling) == texts
