"""LoRA as a workflow: the tiny default with every stage on LoRA, built for real through the
merged Offline model (adapters and merged models as file targets, merged models temporary under
``intermediates.keep_merged_models: false``); the one-GPU preset's plan on a fresh clone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_workflow import ROOT, STAGE_I, STAGE_II, STAGE_III, planned_jobs, snakemake

pytestmark = pytest.mark.workflow

ONE_GPU = ROOT / "config" / "presets" / "qwen25vl_3b_1gpu.yaml"
# The tiny default, every stage on LoRA, adapters only; smaller splits and one epoch per SFT
# run: through Offline nothing depends on the models' quality. Losses logged at every step.
LORA = """
synthetic: {n_train: 64, n_test: 12}
splits: {d_a: 16, d_b: 8, pool: 8}
generation: {max_new_tokens: 64}
sft:
  common: {finetuning_type: lora, logging_steps: 1}
  r0: {num_train_epochs: 1}
  sherlock_sft: {num_train_epochs: 1}
preference:
  common: {finetuning_type: lora, logging_steps: 1}
intermediates: {keep_merged_models: false}
"""
OFFLINE = "results/models/offline"


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("lora_run")
    (workdir / "lora.yaml").write_text(LORA)
    result = snakemake(workdir, "--cores", "2", OFFLINE, "--configfile", "lora.yaml")
    (workdir / "run.log").write_text(result.stdout + result.stderr)
    return workdir


def test_every_stage_writes_its_adapter_and_the_merged_models_follow(lora_run: Path) -> None:
    models = lora_run / "results" / "models"
    for stage in ("r0", "sft", "offline"):
        adapter = models / f"{stage}_adapter"
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA" and config["r"] == 8 and config["lora_alpha"] == 16
        weights = load_file(str(adapter / "adapter_model.safetensors"))
        assert weights and all("lora_" in name for name in weights), stage
        assert not (adapter / "model.safetensors").exists()  # an adapter, not a model
    # Stage I through LLaMA-Factory's LoRA, its log beside the adapter
    results = lora_run / "results"
    r0_run = yaml.safe_load((results / "llamafactory" / "r0" / "train.yaml").read_text())
    assert r0_run["finetuning_type"] == "lora" and r0_run["lora_target"] == "all"
    assert json.loads((models / "r0_adapter" / "trainer_state.json").read_text())["log_history"]
    # the preference stage: peft in our trainer, only the adapter trained
    offline_run = yaml.safe_load((results / "runs" / "offline" / "train.yaml").read_text())
    assert offline_run["finetuning_type"] == "lora"
    assert offline_run["model_name_or_path"] == "results/models/sft"  # the merged SFT
    log = json.loads((models / "offline_adapter" / "sherlock_training.json").read_text())
    weights = load_file(str(models / "offline_adapter" / "adapter_model.safetensors"))
    assert log["finetuning_type"] == "lora"
    assert log["trainable_parameters"] == sum(t.numel() for t in weights.values())
    losses = [entry["loss"] for entry in log["log_history"] if "loss" in entry]
    assert losses and all(loss == loss for loss in losses)  # logged, finite
    # the target's merged model: Sherlock-SFT's and Offline's adapters merged into the base
    merge = json.loads((models / "offline" / "sherlock_merge.json").read_text())
    assert merge["model"] == "results/models/base"
    assert merge["adapters"] == ["results/models/sft_adapter", "results/models/offline_adapter"]
    # adapters only: the merged models the run read are gone, the target's stays ...
    assert not (models / "r0").exists() and not (models / "sft").exists()
    assert (models / "offline" / "model.safetensors").is_file()
    assert "Removing temporary output results/models/sft." in (lora_run / "run.log").read_text()
    # ... and one asked for again is merged again, nothing retrained
    assert planned_jobs(lora_run, "results/models/sft", "--configfile", "lora.yaml") == {
        "merge_adapter": 1
    }
    assert planned_jobs(lora_run, OFFLINE, "--configfile", "lora.yaml") == {}


def test_the_merged_model_is_the_base_with_both_adapters(lora_run: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    models = lora_run / "results" / "models"
    model = AutoModelForImageTextToText.from_pretrained(models / "base", dtype=torch.float32)
    model = PeftModel.from_pretrained(model, models / "sft_adapter").merge_and_unload()
    model = PeftModel.from_pretrained(model, models / "offline_adapter").eval()
    merged = AutoModelForImageTextToText.from_pretrained(models / "offline", dtype=torch.float32)
    ids = torch.randint(0, 700, (2, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(
            merged.eval()(input_ids=ids).logits, model(input_ids=ids).logits, rtol=1e-5, atol=1e-5
        )


def test_the_one_gpu_preset_plans_on_a_fresh_clone(tmp_path: Path, monkeypatch) -> None:
    """LoRA in every stage, each adapter merged; one GPU per job, merges on the CPU."""
    # A hub id plans when the hub may be asked (as for the other presets of real models).
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    data = tmp_path / "data" / "LLaVA-CoT-100k"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text("{}\n")  # the plan needs the file, not its content
    vllm_python = tmp_path / ".venv-vllm" / "bin" / "python"
    vllm_python.parent.mkdir(parents=True)
    vllm_python.symlink_to(sys.executable)
    jobs = planned_jobs(tmp_path, "iter2", "--configfile", str(ONE_GPU))
    assert set(jobs) == (STAGE_I | STAGE_II | STAGE_III | {"merge_adapter", "iter2"}) - {
        "synthetic_data",
        "tiny_model",
    }
    assert jobs["merge_adapter"] == 5  # r0, sft, offline, iter1, iter2
    text = snakemake(tmp_path, "-n", "-p", "iter2", "--configfile", str(ONE_GPU)).stdout
    results = "results/qwen25vl_3b_1gpu/models"
    for rule, hparams in (("r0_config", '"lora_rank": 16'), ("offline_config", '"lora_rank": 16')):
        block = text.split(f"rule {rule}:")[1].split("\n\n")[0]
        assert '"finetuning_type": "lora"' in block and hparams in block
        assert '"freeze_vision_tower": true' in block
    r0 = text.split("rule r0:")[1].split("\n\n")[0]
    assert f"output: {results}/r0_adapter" in r0 and "gpu=1," in r0
    assert "--model Qwen/Qwen2.5-VL-3B-Instruct --adapters" in text
    chain = f"{results}/sft_adapter {results}/offline_adapter {results}/iter1_adapter"
    assert f"--adapters {chain} --template qwen2_vl" in text  # iter1's merge: from the base
    merge = text.split("rule merge_adapter:")[1].split("\n\n")[0]
    assert "gpu=0," in merge
    assert f"--model {results}/iter1 " in text  # M_1 (merged) generates for iteration 2
