"""LoRA in the preference stages (peft) and the merged models (LLaMA-Factory's export).

A fresh adapter is zero, so the LoRA policy is its base: same log-probabilities, same Sherlock
loss, and the adapter's gradient is the full model's weight gradient seen through the adapter
(dL/dB = s · G · Aᵀ); the reference with the adapter off is the base even once the adapter has
moved; training moves the adapter only; the merged model computes what the adapter model does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from defaults import FREEZE_KEYS, training_args
from test_pref_training import CONFIG, REFINE, make_examples
from transformers import AutoModelForImageTextToText, AutoProcessor

from sherlock.preference import lora
from sherlock.preference.trainer import (
    PreferenceCollator,
    PreferenceDataset,
    SherlockTrainer,
    batch_log_probs,
)

SETTINGS = lora.LoraSettings(rank=4, alpha=8, dropout=0.0, target="all")
VISION = "visual.blocks."


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path):
    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def examples(records: list[dict], synthetic_dir: Path):
    return make_examples(records, synthetic_dir, 4)


def _base(tiny_model_dir: Path):
    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)


def _trainer(model, tmp_path: Path, examples, processor, **overrides) -> SherlockTrainer:
    args = training_args(
        tmp_path / "out",
        per_device_train_batch_size=2,
        per_device_eval_batch_size=4,
        learning_rate=overrides.pop("learning_rate", 1e-2),
        num_train_epochs=1,
        lr_scheduler_type="constant",
        logging_steps=1,
        seed=3,
        **{key: overrides.pop(key, False) for key in FREEZE_KEYS},
        **overrides,
    )
    return SherlockTrainer(
        model=model,
        args=args,
        train_dataset=PreferenceDataset(examples, processor, REFINE, CONFIG, args.max_length),
        data_collator=PreferenceCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,
    )


def _lora(tiny_model_dir: Path, vision_tower: bool = False):
    return lora.add_adapter(
        _base(tiny_model_dir), SETTINGS, vision_tower=vision_tower, projector=False,
        language_model=False,
    )


def _batch(trainer: SherlockTrainer) -> dict:
    dataset = trainer.train_dataset
    return trainer.data_collator([dataset[i] for i in range(len(dataset))])


def test_the_adapters_go_where_stage_one_puts_them(tiny_model_dir: Path) -> None:
    """Every linear layer of the language model and the vision tower, none in the projector or
    the LM head; none in a frozen vision tower (LLaMA-Factory's choice for Stage I)."""
    adapted = {n.removesuffix(".lora_A") for n, _ in _lora(tiny_model_dir).named_modules()
               if n.endswith(".lora_A")}
    assert any(".self_attn.q_proj" in n for n in adapted)
    assert any(".mlp.down_proj" in n for n in adapted)
    assert any(VISION in n and n.endswith(".attn.qkv") for n in adapted)
    assert not any("merger" in n or "lm_head" in n or "patch_embed" in n for n in adapted)
    frozen_tower = _lora(tiny_model_dir, vision_tower=True)
    assert not any(VISION in n for n, _ in frozen_tower.named_modules() if "lora_A" in n)
    with pytest.raises(ValueError, match="matches no module"):
        lora.target_modules(_base(tiny_model_dir), "no_such_proj", False, False, False)


def test_a_fresh_adapter_is_its_base_and_backpropagates_the_full_models_loss(
    tiny_model_dir: Path, tmp_path: Path, processor, examples
) -> None:
    full = _trainer(_base(tiny_model_dir), tmp_path, examples, processor)
    adapted = _trainer(_lora(tiny_model_dir), tmp_path, examples, processor)
    full_table = full.precompute_reference()
    lora_table = adapted.precompute_reference()
    assert torch.equal(full_table, lora_table)  # B = 0: not one bit differs
    batch = _batch(full)
    with torch.no_grad():
        full_logps, _ = batch_log_probs(full.model.eval(), batch)
        lora_logps, _ = batch_log_probs(adapted.model.eval(), batch)
    assert torch.equal(full_logps, lora_logps)
    full_loss = full.compute_loss(full.model, batch)
    lora_loss = adapted.compute_loss(adapted.model, batch)
    # Δ = 0 everywhere: 0.2·log 2 (DPO) + 0.8·(1 + 1) (both squared correction terms)
    assert lora_loss.item() == full_loss.item() == pytest.approx(0.2 * 0.693147 + 1.6, abs=1e-5)
    full_loss.backward()
    lora_loss.backward()
    weights = dict(full.model.named_parameters())
    checked = 0
    for name, module in adapted.model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in module.lora_A:
            continue
        a = module.lora_A["default"].weight
        b = module.lora_B["default"].weight
        gradient = weights[name.removeprefix("base_model.model.") + ".weight"].grad
        # W' = W + s·B·A, so dL/dB = s · dL/dW · Aᵀ, and dL/dA = s · Bᵀ · dL/dW = 0 at B = 0
        expected = module.scaling["default"] * gradient @ a.detach().T
        torch.testing.assert_close(b.grad, expected, rtol=1e-4, atol=1e-7)
        assert a.grad is None or not a.grad.any()
        checked += 1
    assert checked > 10


def test_the_reference_is_the_base_with_the_adapter_off(
    tiny_model_dir: Path, tmp_path: Path, processor, examples
) -> None:
    full = _trainer(_base(tiny_model_dir), tmp_path, examples, processor)
    base_table = full.precompute_reference()
    # on the fly, with no second model: the trainer takes the adapter's own base
    adapted = _trainer(
        _lora(tiny_model_dir), tmp_path, examples, processor, precompute_ref_log_probs=False
    )
    assert adapted.reference_model is None
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # move the adapter away from zero
        for name, parameter in adapted.model.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))
    batch = _batch(full)
    reference = batch.pop("reference_logps")
    adapted.model.train()
    with torch.no_grad():
        policy, _ = batch_log_probs(adapted.model.eval(), batch)
        adapted.model.train()
        off = adapted.reference_log_probs(adapted.model, batch)
    assert (policy - base_table.reshape(-1)).abs().max() > 1e-2  # the adapter does act
    torch.testing.assert_close(off, base_table.reshape(-1), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(off, reference.reshape(-1), rtol=1e-5, atol=1e-4)
    assert adapted.model.training  # back as it was, adapter on
    with torch.no_grad():
        again, _ = batch_log_probs(adapted.model.eval(), batch)
    torch.testing.assert_close(again, policy, rtol=0, atol=0)
    # the loss on the fly (adapter off) equals the loss against the base's table
    with torch.no_grad():
        on_the_fly = adapted.compute_loss(adapted.model, batch)
        tabled = adapted.compute_loss(adapted.model, {**batch, "reference_logps": reference})
    assert float(on_the_fly) == pytest.approx(float(tabled), abs=1e-4)
    assert abs(float(tabled) - (0.2 * 0.693147 + 1.6)) > 1e-3  # Δ ≠ 0 now


def test_training_moves_the_adapter_only(
    tiny_model_dir: Path, tmp_path: Path, processor, examples
) -> None:
    model = lora.add_adapter(
        _base(tiny_model_dir), SETTINGS, vision_tower=True, projector=True, language_model=False
    )
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = _trainer(
        model, tmp_path, examples, processor, rpo_alpha=1.0,
        freeze_vision_tower=True, freeze_multi_modal_projector=True,
    )
    trainer.train()
    assert trainer.state.global_step == 2
    adapter = {name for name in before if ".lora_" in name}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == adapter
    assert lora.trainable_count(model) == sum(before[name].numel() for name in adapter)
    for name, parameter in model.named_parameters():
        if name in adapter:
            continue
        assert torch.equal(parameter, before[name]), name  # bit-identical, frozen modules too
    moved = [name for name in adapter if not torch.equal(model.get_parameter(name), before[name])]
    assert {name for name in adapter if "lora_B" in name} <= set(moved)
    assert not any(VISION in name or "merger" in name for name in adapter)
    # the frozen modules are the freeze keys' (as in a full run), none of them adapted
    assert trainer.frozen_parameters and all(
        VISION in n or "merger" in n or "patch_embed" in n for n in trainer.frozen_parameters
    )


def test_the_merged_model_computes_what_the_adapter_model_does(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Two adapters in a chain (as SFT → Offline): LLaMA-Factory's export of both, in order,
    gives the logits of the base with the first merged and the second on top."""
    from peft import PeftModel

    from sherlock.sft.merge import MERGE_FILE, merge_adapters

    generator = torch.Generator().manual_seed(11)
    folders = []
    model = _base(tiny_model_dir)
    for n in range(2):
        adapted = lora.add_adapter(model, SETTINGS, False, False, False)
        with torch.no_grad():
            for name, parameter in adapted.named_parameters():
                if "lora_B" in name:
                    parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
        folder = tmp_path / f"adapter{n}"
        adapted.save_pretrained(folder)
        folders.append(str(folder))
        model = adapted.merge_and_unload()  # what the next stage trains on
    ids = torch.randint(0, 700, (2, 24), generator=generator)
    first = PeftModel.from_pretrained(_base(tiny_model_dir), folders[0]).merge_and_unload()
    expected_model = PeftModel.from_pretrained(first, folders[1]).eval()
    merged_dir = tmp_path / "merged"
    summary = merge_adapters(str(tiny_model_dir), folders, merged_dir, "qwen2_vl")
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = expected_model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
        base = _base(tiny_model_dir).eval()(input_ids=ids).logits
    assert (expected - base).abs().max() > 1e-2  # the adapters change the model
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert summary["adapters"] == folders and summary["dtype"] == "float32"
    assert json.loads((merged_dir / MERGE_FILE).read_text())["model"] == str(tiny_model_dir)
    assert not (merged_dir / "Modelfile").exists()
    assert not list(tmp_path.glob("*.partial"))
    assert (merged_dir / "processor_config.json").is_file()


def test_the_lora_keys_count_only_under_lora(tmp_path: Path) -> None:
    import copy

    from defaults import DEFAULT_CONFIG

    from sherlock.config import cross_field_problems, finetuning_keys

    common = {"learning_rate": 1e-4, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0,
              "lora_target": "all"}
    # full: the run file is what it was before LoRA (no rerun of a finished full build)
    assert finetuning_keys({**common, "finetuning_type": "full"}) == {"learning_rate": 1e-4}
    assert finetuning_keys({**common, "finetuning_type": "lora"})["lora_rank"] == 8
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["sft"]["perception"]["finetuning_type"] = "lora"
    assert any(p.startswith("sft.perception.finetuning_type") for p in cross_field_problems(config))
    with pytest.raises(ValueError, match="lack lora_rank"):
        training_args(tmp_path, finetuning_type="lora", lora_dropout=0.0, lora_target="all")
    with pytest.raises(ValueError, match="full or lora"):
        training_args(tmp_path, finetuning_type="freeze")
    args = training_args(
        tmp_path, finetuning_type="lora", lora_rank=4, lora_dropout=0.1, lora_target="q_proj"
    )
    assert args.lora == lora.LoraSettings(4, 8, 0.1, "q_proj")  # α: 2 × rank, LLaMA-Factory's
    assert training_args(tmp_path).lora is None  # a run file without the keys trains in full


def test_a_lora_run_file_trains_the_adapter_and_resumes_to_the_same_one(
    tiny_model_dir: Path, tmp_path: Path, examples, monkeypatch
) -> None:
    """Through the run file, as the rules run it: the adapter folder comes out (no model), and a
    run killed after its step-1 checkpoint resumes to the uninterrupted run's adapter (which it
    would not if the fresh adapter's random matrix were drawn unseeded)."""
    import yaml
    from defaults import objective_keys
    from safetensors.torch import load_file

    from sherlock.preference.records import preference_row
    from sherlock.preference.run import prepare_run, train_from_file

    prefs = tmp_path / "prefs.json"
    prefs.write_text(json.dumps([preference_row(ex) for ex in examples]))

    def run_file(name: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        settings = {
            **objective_keys(),
            "finetuning_type": "lora", "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.0,
            "lora_target": "all",
            "model_name_or_path": str(tiny_model_dir), "dataset": str(prefs),
            "output_dir": str(tmp_path / f"{name}.partial"),
            "per_device_train_batch_size": 2, "num_train_epochs": 1, "learning_rate": 1e-2,
            "logging_steps": 1, "save_strategy": "steps", "save_steps": 1,
            "save_total_limit": 2, "report_to": "none", "seed": 3,
        }
        path.write_text(yaml.safe_dump(settings))
        return path

    whole_file = run_file("whole")
    assert prepare_run(whole_file, resume=True) is None
    summary = train_from_file(whole_file, tmp_path / "whole")
    whole = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    assert not (tmp_path / "whole" / "model.safetensors").exists()
    assert summary["finetuning_type"] == "lora"
    assert summary["trainable_parameters"] == sum(t.numel() for t in whole.values())

    interrupted = run_file("resumed")
    original_step = SherlockTrainer.training_step
    steps = {"n": 0}

    def crash_at_second_step(self, *args, **kwargs):
        steps["n"] += 1
        if steps["n"] == 2:
            raise KeyboardInterrupt("killed")
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(SherlockTrainer, "training_step", crash_at_second_step)
    assert prepare_run(interrupted, resume=True) is None
    with pytest.raises(KeyboardInterrupt):
        train_from_file(interrupted, tmp_path / "resumed")
    monkeypatch.setattr(SherlockTrainer, "training_step", original_step)
    checkpoint = prepare_run(interrupted, resume=True)
    assert checkpoint == tmp_path / "resumed.partial" / "checkpoint-1"
    train_from_file(interrupted, tmp_path / "resumed", checkpoint)
    resumed = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert resumed.keys() == whole.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=1e-6)
    assert any(whole[name].abs().sum() > 0 for name in whole if "lora_B" in name)  # it trained
