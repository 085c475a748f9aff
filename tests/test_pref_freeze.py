"""The preference stages' freeze keys (LLaMA-Factory's names): what they name is not trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from defaults import training_args
from test_pref_training import CONFIG, make_examples
from transformers import AutoModelForImageTextToText, AutoProcessor

from sherlock.data.prompts import load_prompt
from sherlock.preference.freezing import forbidden_modules, freeze
from sherlock.preference.trainer import PreferenceCollator, PreferenceDataset, SherlockTrainer

VISION = ("model.visual.patch_embed.", "model.visual.blocks.")
PROJECTOR = ("model.visual.merger.",)


def test_the_module_names_are_llamafactorys_per_architecture() -> None:
    assert forbidden_modules("qwen2_vl", True, True, False) == {
        "visual.patch_embed",
        "visual.blocks",
        "visual.merger",
    }
    assert forbidden_modules("qwen2_5_vl", True, False, False) == {
        "visual.patch_embed",
        "visual.blocks",
    }
    assert forbidden_modules("mllama", True, True, False) == {
        "vision_model",
        "multi_modal_projector",
    }
    assert forbidden_modules("mllama", False, False, True) == {"language_model", "lm_head"}
    assert forbidden_modules("no_such_model", False, False, False) == set()
    with pytest.raises(ValueError, match="'no_such_model'"):
        forbidden_modules("no_such_model", True, False, False)


def test_freeze_turns_off_exactly_the_named_parts(tiny_model_dir: Path) -> None:
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    frozen = set(freeze(model, vision_tower=True, projector=False, language_model=False))
    names = [name for name, _ in model.named_parameters()]
    assert frozen == {n for n in names if n.startswith(VISION)} and frozen
    assert all(p.requires_grad == (n not in frozen) for n, p in model.named_parameters())


def test_frozen_parameters_stay_bit_identical_and_the_rest_moves(
    tiny_model_dir: Path, tmp_path: Path, records: list[dict], synthetic_dir: Path
) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = training_args(
        tmp_path / "out",
        rpo_alpha=1.0,  # the NLL term: every trainable part gets a gradient from step 1
        freeze_vision_tower=True,
        freeze_multi_modal_projector=True,
        freeze_language_model=False,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        num_train_epochs=1,
        lr_scheduler_type="constant",
        seed=3,
    )
    examples = make_examples(records, synthetic_dir, 4)
    trainer = SherlockTrainer(
        model=model,
        args=args,
        train_dataset=PreferenceDataset(
            examples, processor, load_prompt("refine"), CONFIG, args.max_length
        ),
        data_collator=PreferenceCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,
    )
    trainer.train()
    frozen_prefixes = VISION + PROJECTOR
    frozen = {n for n in before if n.startswith(frozen_prefixes)}
    assert set(trainer.frozen_parameters) == frozen
    after = dict(trainer.model.named_parameters())
    for name in frozen:
        assert torch.equal(after[name], before[name]), name  # bit-identical
    trained = [n for n in before if n not in frozen]
    moved = [n for n in trained if not torch.equal(after[n], before[n])]
    assert len(moved) == len(trained), sorted(set(trained) - set(moved))
    # no optimizer state for a frozen parameter
    with_state = {id(p) for p in trainer.optimizer.state}
    assert not any(id(after[name]) in with_state for name in frozen)
    assert {id(after[name]) for name in trained} <= with_state
