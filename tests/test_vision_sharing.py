"""Issue 20: each record's image through the vision tower once per forward pass.

On each tiny architecture, in float32 with every part trained (the vision tower included, so its
gradient is compared too): the Sherlock loss, every parameter's gradient and the reference
log-probabilities computed with shared vision features equal those of the model's own
per-sequence path, while the vision tower sees each record's image once instead of once per
distinct sequence. Tolerance: relative 1e-4 (absolute 1e-6 for gradients near zero): the two
paths sum the same terms in a different order, nothing more.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch
from defaults import coefficients_of, perturbation, training_args  # noqa: E402
from test_pref_training import make_examples  # noqa: E402
from transformers import AutoModelForImageTextToText, AutoProcessor

from sherlock.data.prompts import load_prompt
from sherlock.preference.encoding import encode_example
from sherlock.preference.losses import sherlock_loss
from sherlock.preference.trainer import (
    PreferenceCollator,
    PreferenceDataset,
    SherlockTrainer,
    batch_log_probs,
    by_name,
    record_betas,
)
from sherlock.preference.vision_sharing import shared_vision_inputs

REFINE = load_prompt("refine")
CONFIG = coefficients_of(perturbation({"recipe": "reference"}), 0.1, 0.025)
ARCHITECTURES = ["qwen2_vl", "qwen2_5_vl", "mllama"]
RECORDS = 3
TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}


def vision_module(model) -> torch.nn.Module:
    inner = model.model
    return inner.visual if hasattr(inner, "visual") else inner.vision_model


def count_images(model) -> list[int]:
    """A list that each vision-tower call appends its number of images to."""
    calls: list[int] = []

    def hook(module, args, kwargs):
        grid = kwargs.get("grid_thw")
        calls.append(len(grid) if grid is not None else len(kwargs["pixel_values"]))

    vision_module(model).register_forward_pre_hook(hook, with_kwargs=True)
    return calls


def loss_and_gradients(model, batch, share: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
    model.zero_grad()
    logps, _ = batch_log_probs(model, batch, share)
    # A fixed stand-in for the reference (the policy's own values would make Δ = 0).
    reference = torch.linspace(-40.0, -20.0, logps.numel())
    loss, _ = sherlock_loss(
        by_name(logps, RECORDS),
        by_name(reference, RECORDS),
        batch["beta_dpo"],
        batch["beta_sc"],
        dpo_coef=0.2,
        sc_coef=0.8,
    )
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), logps.detach(), grads


@pytest.fixture(scope="module")
def batches(records: list[dict], synthetic_dir: Path) -> dict:
    return {"examples": make_examples(records, synthetic_dir, RECORDS)}


def make_batch(processor, examples) -> dict:
    items = []
    for index, example in enumerate(examples):
        beta_dpo, beta_sc = record_betas(example, CONFIG)
        items.append(
            {
                "index": index,
                "sequences": encode_example(processor, example, REFINE),
                "beta_dpo": torch.tensor(beta_dpo),
                "beta_sc": torch.tensor(beta_sc),
            }
        )
    return PreferenceCollator(processor.tokenizer.pad_token_id)(items)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_shared_features_give_the_same_loss_and_gradients(
    architecture: str, tiny_vlm, batches: dict
) -> None:
    folder = tiny_vlm(architecture)
    processor = AutoProcessor.from_pretrained(folder)
    batch = make_batch(processor, batches["examples"])
    distinct = len(batch["input_ids"])
    own = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    open_gates(own)
    shared = copy.deepcopy(own)
    own_calls, shared_calls = count_images(own), count_images(shared)

    own_loss, own_logps, own_grads = loss_and_gradients(own, batch, share=False)
    shared_loss, shared_logps, shared_grads = loss_and_gradients(shared, batch, share=True)

    # The vision tower ran over every distinct sequence's image, or over each record's once.
    assert own_calls == [distinct] and shared_calls == [RECORDS] and distinct > RECORDS
    torch.testing.assert_close(shared_logps, own_logps, **TOLERANCE)
    torch.testing.assert_close(shared_loss, own_loss, **TOLERANCE)
    trained = {n for n, p in own.named_parameters() if p.requires_grad}
    assert set(own_grads) == set(shared_grads) == trained  # every parameter got a gradient
    vision = [n for n in own_grads if "visual" in n or "vision_model" in n]
    assert vision and any(own_grads[n].abs().sum() > 0 for n in vision)
    for name in own_grads:
        torch.testing.assert_close(shared_grads[name], own_grads[name], **TOLERANCE, msg=name)


def open_gates(model) -> None:
    """Mllama's cross-attention gates start at 0, shutting the image out: open them, so the
    image changes every log-probability (a no-op for the Qwen models)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "cross_attn_attn_gate" in name or "cross_attn_mlp_gate" in name:
                parameter.fill_(0.5)


def make_trainer(folder: Path, out: Path, examples, share: bool) -> SherlockTrainer:
    processor = AutoProcessor.from_pretrained(folder)
    args = training_args(
        out,
        precompute_ref_batch_size=2,
        share_vision_features=share,
        per_device_train_batch_size=2,
        freeze_vision_tower=False,
        freeze_multi_modal_projector=False,
        freeze_language_model=False,
    )
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    open_gates(model)
    return SherlockTrainer(
        model=model,
        args=args,
        train_dataset=PreferenceDataset(examples, processor, REFINE, CONFIG, None),
        data_collator=PreferenceCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,
    )


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_trainer_shares_in_its_reference_table_and_its_loss(
    architecture: str, tiny_vlm, tmp_path: Path, records: list[dict], synthetic_dir: Path
) -> None:
    """Through SherlockTrainer, as training runs it: the reference table (two batches of two
    records) and the loss of a batch are those of the per-sequence path."""
    examples = make_examples(records, synthetic_dir, 4)
    folder = tiny_vlm(architecture)
    tables, losses = {}, {}
    for share in (False, True):
        trainer = make_trainer(folder, tmp_path / str(share), examples, share)
        calls = count_images(trainer.model)
        tables[share] = trainer.precompute_reference()
        # Two images per reference batch when shared, else one per distinct sequence.
        assert len(calls) == 2
        assert calls == [2, 2] if share else all(count > 2 for count in calls)
        # A fixed stand-in for the table: against the policy's own values Δ = 0 and the loss
        # would be a constant.
        trainer.train_dataset.reference_logps = torch.linspace(-40.0, -20.0, 40).view(4, 10)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
        losses[share] = trainer.compute_loss(trainer.model, batch).detach()
        assert calls[2:] == ([2] if share else [len(batch["input_ids"])])
    assert tables[False].shape == (4, 10) and torch.all(tables[False] < 0)
    torch.testing.assert_close(tables[True], tables[False], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(losses[True], losses[False], **TOLERANCE)


def test_an_architecture_without_sharing_runs_its_own_path_and_says_so_once(
    tiny_vlm, batches: dict, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tiny_vlm("qwen2_vl")
    processor = AutoProcessor.from_pretrained(folder)
    batch = make_batch(processor, batches["examples"])
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    model.config.model_type = "an_unknown_vlm"  # as a model this module does not know
    inputs = {k: batch[k] for k in ("input_ids", "pixel_values", "image_grid_thw")}
    with caplog.at_level(logging.WARNING, logger="sherlock.preference.vision_sharing"):
        first = shared_vision_inputs(model, inputs, batch["sequence_images"])
        second = shared_vision_inputs(model, inputs, batch["sequence_images"])
    assert first is inputs and second is inputs
    warnings = [r for r in caplog.records if "an_unknown_vlm" in r.getMessage()]
    assert len(warnings) == 1
