"""One key for the node (sherlock.node) and what reruns a training (sherlock.reruns)."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from defaults import DEFAULT_CONFIG

from sherlock.config import ConfigError
from sherlock.node import apply_layout, global_batch, layout, resolve_batch
from sherlock.reruns import compared_training, identity, launch_settings, split_training

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "presets" / "paper_llama32v.yaml"


def config_with(gpus: int, **resources) -> dict:
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["node"]["gpus"] = gpus
    for kind, gpu in resources.items():
        config["resources"][kind]["gpu"] = gpu
    return config


def test_node_gpus_derive_the_tags_and_the_shards_unless_set():
    assert layout(config_with(0)) == layout(config_with(0))
    cpu = layout(config_with(0))
    assert (cpu.train_gpu, cpu.generate_gpu, cpu.shards, cpu.processes) == (0, 0, 1, 1)
    node = layout(config_with(8))
    assert (node.train_gpu, node.generate_gpu, node.shards, node.processes) == (8, 1, 8, 8)
    # explicit keys win: two GPUs per generating job make four shards of an 8-GPU node
    two = layout(config_with(8, generate=2))
    assert (two.generate_gpu, two.shards) == (2, 4)
    config = config_with(8, train=4)
    config["generation"]["shards"] = 3
    assert (layout(config).train_gpu, layout(config).shards) == (4, 3)
    config["resources"]["train"]["nodes"] = 2
    assert layout(config).processes == 8  # 4 GPUs on each of 2 nodes
    resolved = config_with(4)
    apply_layout(resolved)  # written back: the rules read plain numbers
    assert resolved["resources"]["train"]["gpu"] == 4
    assert resolved["resources"]["generate"]["gpu"] == 1
    assert resolved["generation"]["shards"] == 4


@pytest.mark.parametrize(
    ("processes", "per_device", "expected"),
    [
        (8, 4, (4, 4)),  # the paper: 4 per device × 4 accumulation × 8 GPUs = 128
        (4, 4, (4, 8)),
        (2, 4, (4, 16)),
        (1, 4, (4, 32)),
        (64, 4, (2, 1)),  # 8 nodes of 8: the per-device batch comes down to 128 / 64
        (16, 3, (2, 4)),  # 8 per process: 3 does not divide it, 2 is the largest that does
    ],
)
def test_the_global_batch_stays_the_recipes(processes, per_device, expected):
    keys = {"per_device_train_batch_size": per_device, "global_batch_size": 128,
            "gradient_accumulation_steps": None, "learning_rate": 1e-5}  # fmt: skip
    resolved = resolve_batch(keys, processes, "sft.common")
    assert "global_batch_size" not in resolved and resolved["learning_rate"] == 1e-5
    got = (resolved["per_device_train_batch_size"], resolved["gradient_accumulation_steps"])
    assert got == expected
    assert global_batch(resolved, processes) == 128


def test_explicit_accumulation_wins_and_an_indivisible_batch_is_refused():
    keys = {"per_device_train_batch_size": 4, "global_batch_size": 128,
            "gradient_accumulation_steps": 2}  # fmt: skip
    assert resolve_batch(keys, 8, "sft.common")["gradient_accumulation_steps"] == 2
    without = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}
    assert resolve_batch(without, 8, "sft.common") == without  # no global batch: as given
    with pytest.raises(ConfigError, match=r"sft.r0.global_batch_size: 128 .* 3 training"):
        resolve_batch({"global_batch_size": 128, "per_device_train_batch_size": 4}, 3, "sft.r0")


def test_a_training_is_compared_by_what_it_learns_and_its_global_batch():
    keys = {"learning_rate": 1e-5, "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 4, "deepspeed": "config/deepspeed/ds_z3.json",
            "dataloader_num_workers": 4, "logging_steps": 10, "bf16": True}  # fmt: skip
    results, execution = split_training(keys)
    assert results == {"learning_rate": 1e-5, "bf16": True}
    assert set(execution) == {"per_device_train_batch_size", "gradient_accumulation_steps",
                              "deepspeed", "dataloader_num_workers", "logging_steps"}  # fmt: skip
    on_eight = compared_training(keys, 8)
    on_four = compared_training({**keys, "gradient_accumulation_steps": 8}, 4)
    assert on_eight == on_four == {"learning_rate": 1e-5, "bf16": True, "global_batch_size": 128}
    assert compared_training({**keys, "per_device_train_batch_size": 2}, 8) != on_eight
    launch = launch_settings({**keys, "gradient_checkpointing": None}, output_dir="x.partial")
    assert launch["output_dir"] == "x.partial" and "gradient_checkpointing" not in launch
    assert "learning_rate" not in launch and launch["deepspeed"].endswith("ds_z3.json")


def test_a_model_folder_is_known_by_its_files_not_its_place(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"0" * 64)
    before = identity(folder)
    moved = tmp_path / "elsewhere" / "model"
    moved.parent.mkdir()
    os.replace(folder, moved)  # mv keeps the files' times
    assert identity(moved) == before and before.startswith("folder:")
    (moved / "model.safetensors").write_bytes(b"1" * 65)
    assert identity(moved) != before
    assert identity("org/name") == "org/name"  # a hub id stands for itself


def paper_plan(workdir: Path, gpus: int) -> str:
    """The paper preset's plan (printed commands) on a node of ``gpus`` GPUs, nothing downloaded."""
    node = workdir / f"node{gpus}.yaml"
    node.write_text(f"node: {{gpus: {gpus}}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
         str(workdir), "-n", "-p", "offline", "--configfile", str(PAPER), str(node)],
        capture_output=True, text=True, cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def launch_of(plan: str, rule: str) -> dict:
    block = plan.split(f"rule {rule}:")[1].split("\n\n")[0]
    return json.loads(shlex.split(block.split("--launch ")[1])[0])


@pytest.mark.workflow
@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_node_gpus_lay_out_the_paper_preset(tmp_path, gpus):
    """Tags, shard jobs, accumulation at the paper's global batch, DeepSpeed's torchrun on one
    GPU, and the plan's summary saying so."""
    plan = paper_plan(tmp_path, gpus)
    r0 = plan.split("rule r0:")[1].split("\n\n")[0]
    assert f"gpu={gpus}," in r0
    assert f"python -m sherlock.runtime.gpu_slots --count {gpus} -- python" in r0
    shards = len(set(re.findall(r"sherlock_sft\.json\.shards/(\d+)", plan)))
    assert shards == (gpus if gpus > 1 else 0)  # one GPU: the step is one job
    if gpus > 1:
        assert "gpu=1," in plan.split("rule sherlock_sft_data_shard:")[1].split("\n\n")[0]
    sft, offline = launch_of(plan, "r0"), launch_of(plan, "offline")
    assert sft["per_device_train_batch_size"] * sft["gradient_accumulation_steps"] * gpus == 128
    assert sft["gradient_accumulation_steps"] == 32 // gpus
    assert offline["gradient_accumulation_steps"] * gpus == 32  # 1 per device
    assert sft["deepspeed"] == str(ROOT / "config" / "deepspeed" / "ds_z3_offload.json")
    assert ("--force-torchrun" in r0) == (gpus == 1)
    assert f"node: {gpus} GPU(s)" in plan
    summary = f"global batch 128 (the recipe's 128) = 4 per device × {32 // gpus} accumulation"
    assert summary in plan
    # the run files do not change with the node: the same compared keys, no execution keys
    config = plan.split("rule r0_config:")[1].split("\n\n")[0]
    assert "gradient_accumulation_steps" not in config and "deepspeed" not in config
