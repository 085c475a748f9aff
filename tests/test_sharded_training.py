"""Sharded training that can be trusted: the guard against non-finite steps, FSDP and ZeRO-3 on
two CPU processes against one process.

A non-finite loss is made the way a real one arises: a checkpoint whose embedding of one token is
NaN, a token only one record uses, so only that record's batch goes wrong (its reference
log-probabilities and its loss are NaN). Sequential sampling puts it at a known step.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from defaults import FREEZE_KEYS, objective_keys
from safetensors.torch import load_file
from test_pref_training import make_examples
from transformers import AutoModelForImageTextToText, AutoProcessor

from sherlock.data.prompts import load_prompt
from sherlock.preference.encoding import encode_example
from sherlock.preference.records import PreferenceExample, preference_row
from sherlock.preference.run import prepare_run, train_from_file
from sherlock.runtime.finite_guard import NonFiniteStep

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "workflow_scripts" / "train_sherlock.py"
LOSS_RTOL, WEIGHT_ATOL = 1e-4, 4e-5  # as benchmarks/sharded_stability.py states them
BACKENDS = {
    "zero3": {"deepspeed": str(ROOT / "config" / "deepspeed" / "ds_z3.json")},
    "fsdp": {"fsdp": "full_shard auto_wrap", "fsdp_config": str(ROOT / "config/fsdp/fsdp2.json")},
}
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None


def nan_model(source: Path, examples: list[PreferenceExample], out: Path) -> int:
    """A copy of ``source`` whose embedding of a token only one record has is NaN; that
    record's index."""
    processor = AutoProcessor.from_pretrained(source)
    refine = load_prompt("refine", None)
    tokens = [
        {int(t) for s in encode_example(processor, e, refine, 1024) for t in s["input_ids"]}
        for e in examples
    ]
    special = set(processor.tokenizer.all_special_ids)
    for index, own in enumerate(tokens):
        others = set().union(*(t for j, t in enumerate(tokens) if j != index))
        unique = sorted(own - others - special)
        if unique:
            break
    else:
        raise AssertionError("no record has a token of its own")
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight[unique[0]] = float("nan")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return index


def run_file(tmp_path: Path, name: str, model: Path, prefs: Path, **overrides) -> Path:
    settings = {
        **objective_keys(),
        "model_name_or_path": str(model),
        "dataset": str(prefs),
        "output_dir": str(tmp_path / f"{name}.partial"),
        "per_device_train_batch_size": 1,
        "num_train_epochs": 1,
        "learning_rate": 1e-3,
        "lr_scheduler_type": "constant",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 5,
        "precompute_ref_log_probs": True,
        **overrides,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def train(run: Path, model_dir: Path, processes: int = 1) -> subprocess.CompletedProcess:
    script = [str(SCRIPT), str(run), "--model-dir", str(model_dir)]
    if processes > 1:
        torchrun = Path(sys.executable).parent / "torchrun"
        command = [str(torchrun), "--standalone", f"--nproc_per_node={processes}", *script]
    else:
        command = [sys.executable, *script]
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=environ)


def trained(result: subprocess.CompletedProcess, model_dir: Path) -> tuple[list[float], dict]:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    summary = json.loads((model_dir / "sherlock_training.json").read_text())
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    return losses, load_file(str(model_dir / "model.safetensors"))


# -- the guard --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def poisoned(tmp_path_factory, tiny_model_dir: Path, records, synthetic_dir) -> dict:
    """Four records, the one with a NaN token second (step 2 of a sequential epoch)."""
    folder = tmp_path_factory.mktemp("poisoned")
    examples = make_examples(records, synthetic_dir, 4)
    index = nan_model(tiny_model_dir, examples, folder / "model")
    ordered = [examples[i] for i in range(4) if i != index]
    ordered.insert(1, examples[index])
    prefs = folder / "prefs.json"
    prefs.write_text(json.dumps([preference_row(e) for e in ordered]))
    return {"model": folder / "model", "prefs": prefs, "record": examples[index].id}


def test_a_non_finite_loss_stops_the_run_naming_step_records_and_checkpoint(
    tmp_path: Path, poisoned: dict
) -> None:
    """In this process, as train_sherlock.py runs it (the launcher decides about resuming)."""
    run = run_file(
        tmp_path,
        "offline",
        poisoned["model"],
        poisoned["prefs"],
        train_sampling_strategy="sequential",
        save_strategy="steps",
        save_steps=1,
    )
    model_dir, scratch = tmp_path / "offline", tmp_path / "offline.partial"
    expected = (
        f"offline: the loss of step 2 is not finite; records of the batch: "
        f"{poisoned['record']}. Nothing of this step or after it was saved. Last good "
        f"checkpoint: {scratch / 'checkpoint-1'} (step 1; a rerun resumes from it)"
    )
    assert prepare_run(run, resume=True) is None
    with pytest.raises(NonFiniteStep) as stopped:
        train_from_file(run, model_dir)
    assert str(stopped.value).startswith(expected)
    assert not model_dir.exists()  # the stage's model is never written
    assert sorted(p.name for p in scratch.glob("checkpoint-*")) == ["checkpoint-1"]
    # the rerun resumes from that checkpoint, and meets the same batch at the same step
    resume_from = prepare_run(run, resume=True)
    assert resume_from == scratch / "checkpoint-1"
    with pytest.raises(NonFiniteStep, match="the loss of step 2 is not finite"):
        train_from_file(run, model_dir, resume_from)
    assert not model_dir.exists()


def test_skip_drops_the_step_and_the_summary_lists_it(tmp_path: Path, poisoned: dict) -> None:
    run = run_file(
        tmp_path,
        "iter1",
        poisoned["model"],
        poisoned["prefs"],
        train_sampling_strategy="sequential",
        nonfinite_steps="skip",
    )
    prepare_run(run, resume=True)
    summary = train_from_file(run, tmp_path / "iter1")
    assert summary["nonfinite_steps"] == {
        "policy": "skip",
        "skipped_steps": [{"step": 2, "what": "loss", "records": [poisoned["record"]]}],
    }
    saved = json.loads((tmp_path / "iter1" / "sherlock_training.json").read_text())
    assert saved["nonfinite_steps"] == summary["nonfinite_steps"]
    # the NaN embedding row was never used by an update: every other weight stays finite
    weights = load_file(str(tmp_path / "iter1" / "model.safetensors"))
    embeddings = next(k for k in weights if k.endswith("embed_tokens.weight"))
    for name, tensor in weights.items():
        if name != embeddings:
            assert torch.isfinite(tensor).all(), name
    assert torch.isnan(weights[embeddings]).any(dim=1).sum() == 1  # only the poisoned row


# -- two processes, sharded, against one process ----------------------------------------------
@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_vlm, records, synthetic_dir) -> dict:
    """Tiny Llama-3.2-Vision with its vision tower frozen, four records, one process taking two
    records a step: the reference every sharded run is compared with."""
    folder = tmp_path_factory.mktemp("sharded")
    model = tiny_vlm("mllama")
    prefs = folder / "prefs.json"
    prefs.write_text(
        json.dumps([preference_row(e) for e in make_examples(records, synthetic_dir, 4)])
    )
    frozen = {key: False for key in FREEZE_KEYS} | {"freeze_vision_tower": True}
    run = run_file(folder, "one", model, prefs, per_device_train_batch_size=2, **frozen)
    losses, weights = trained(train(run, folder / "one"), folder / "one")
    start = load_file(str(model / "model.safetensors"))
    return {"model": model, "prefs": prefs, "frozen": frozen, "losses": losses,
            "weights": weights, "start": start}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_two_sharded_processes_train_as_one_process_twice(
    backend: str, tmp_path: Path, one_process: dict
) -> None:
    """Each backend twice (the ZeRO-3 case of docs/cluster.md: NaN or unequal before): the same
    losses and weights as one process, and the frozen vision tower bit-identical to the start."""
    if backend == "zero3" and not HAS_DEEPSPEED:
        pytest.skip("DeepSpeed is not installed (pip install -e '.[deepspeed]')")
    reference = one_process
    for attempt in range(2):
        name = f"{backend}{attempt}"
        run = run_file(
            tmp_path,
            name,
            reference["model"],
            reference["prefs"],
            **reference["frozen"],
            **BACKENDS[backend],
        )
        losses, weights = trained(train(run, tmp_path / name, processes=2), tmp_path / name)
        assert len(losses) == len(reference["losses"]) == 2
        assert losses == pytest.approx(reference["losses"], rel=LOSS_RTOL)
        assert weights.keys() == reference["weights"].keys()
        frozen = [k for k in weights if "vision_model" in k]
        assert frozen
        for key, tensor in weights.items():
            if key in frozen:  # never updated: bit for bit the starting weights
                assert torch.equal(tensor, reference["start"][key]), key
            else:
                torch.testing.assert_close(
                    tensor, reference["weights"][key], rtol=0, atol=WEIGHT_ATOL
                )
        moved = [k for k in weights if k not in frozen]
        assert any(not torch.equal(weights[k], reference["start"][k]) for k in moved)


# -- Stage I: LLaMA-Factory with the guard, and with FSDP ---------------------------------------
def sft_run(
    tmp_path: Path, name: str, model: Path, rows: list[dict], synthetic_dir: Path, **hparams
) -> Path:
    """A tiny LLaMA-Factory SFT run file (rows in file order: disable_shuffling)."""
    from sherlock.sft.llamafactory import dataset_info, train_config, write_run_files

    data = tmp_path / f"{name}_data.json"
    data.write_text(json.dumps(rows))
    settings = {
        "num_train_epochs": 1,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "lr_scheduler_type": "constant",
        "logging_steps": 1,
        "cutoff_len": 1024,
        "image_min_pixels": 3136,
        "image_max_pixels": 3136,
        "preprocessing_num_workers": 1,
        "disable_shuffling": True,
        "nonfinite_steps": "stop",
        **hparams,
    }
    config = train_config(
        model=str(model),
        dataset=name,
        dataset_dir=tmp_path,
        output_dir=tmp_path / f"{name}.partial",
        template="qwen2_vl",
        hparams=settings,
        media_dir=synthetic_dir,
        seed=1,
    )
    info = tmp_path / f"{name}_info" / "dataset_info.json"
    info.parent.mkdir()
    config["dataset_dir"] = str(info.parent)
    write_run_files(tmp_path / f"{name}.yaml", info, config, dataset_info(name, data))
    return tmp_path / f"{name}.yaml"


def sft_train(run: Path, model_dir: Path, processes: int = 1) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    if processes > 1:  # LLaMA-Factory's own switch to torchrun, here on CPU processes
        environ.update(FORCE_TORCHRUN="1", NPROC_PER_NODE=str(processes))
    command = [sys.executable, str(ROOT / "workflow_scripts" / "train_llamafactory.py")]
    command += ["--yaml", str(run), "--model-dir", str(model_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=environ)


def sft_rows(records: list[dict]) -> list[dict]:
    return [
        {"id": r["id"], "conversations": r["conversations"], "images": [r["image"]]}
        for r in records
    ]


def test_stage_one_stops_at_a_non_finite_gradient(
    tmp_path: Path, tiny_model_dir: Path, records, synthetic_dir
) -> None:
    """LLaMA-Factory trains with our guard as its callback: the first step whose gradient is not
    finite stops the run, naming the rows of that step; no model folder is written."""
    rows = sft_rows(records[:6])
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    texts = [" ".join(turn["value"] for turn in row["conversations"]) for row in rows]
    tokens = [set(processor.tokenizer(text)["input_ids"][1:-1]) for text in texts]
    index, token = next(
        (i, min(own - set().union(*(t for j, t in enumerate(tokens) if j != i))))
        for i, own in enumerate(tokens)
        if own - set().union(*(t for j, t in enumerate(tokens) if j != i))
    )
    rows.insert(2, rows.pop(index))  # the poisoned row is trained at step 2 (rows 2 and 3)
    poisoned = tmp_path / "poisoned"
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight[token] = float("nan")
    model.save_pretrained(poisoned)
    processor.save_pretrained(poisoned)
    run = sft_run(
        tmp_path, "r0", poisoned, rows, synthetic_dir, save_strategy="steps", save_steps=1
    )
    result = sft_train(run, tmp_path / "r0")
    assert result.returncode != 0
    scratch = tmp_path / "r0.partial"
    assert (
        f"r0: the gradient of step 2 is not finite; records of the batch: {rows[2]['id']}, "
        f"{rows[3]['id']}. Nothing of this step or after it was saved. Last good checkpoint: "
        f"{scratch / 'checkpoint-1'} (step 1; a rerun resumes from it)"
    ) in result.stdout + result.stderr
    assert not (tmp_path / "r0").exists()
    assert sorted(p.name for p in scratch.glob("checkpoint-*")) == ["checkpoint-1"]


def test_stage_one_fsdp_on_two_processes_equals_plain_two_processes(
    tmp_path: Path, tiny_model_dir: Path, records, synthetic_dir
) -> None:
    """FSDP2 through LLaMA-Factory's accelerate path on two CPU processes: the same losses and
    weights as two plain (DDP) processes, the frozen vision tower bit-identical."""
    rows = sft_rows(records[:8])
    frozen = {"freeze_vision_tower": True}
    plain = sft_run(tmp_path, "ddp", tiny_model_dir, rows, synthetic_dir, **frozen)
    fsdp = sft_run(tmp_path, "fsdp", tiny_model_dir, rows, synthetic_dir, **frozen,
                   **BACKENDS["fsdp"])
    results = {}
    for name, run in (("ddp", plain), ("fsdp", fsdp)):
        done = sft_train(run, tmp_path / name, processes=2)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        state = json.loads((tmp_path / name / "trainer_state.json").read_text())
        losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
        results[name] = losses, load_file(str(tmp_path / name / "model.safetensors"))
    assert len(results["fsdp"][0]) == 2
    assert results["fsdp"][0] == pytest.approx(results["ddp"][0], rel=LOSS_RTOL)
    start = load_file(str(tiny_model_dir / "model.safetensors"))
    weights, reference = results["fsdp"][1], results["ddp"][1]
    assert weights.keys() == reference.keys()
    for key, tensor in weights.items():
        if key.startswith(("visual.patch_embed", "visual.blocks")):  # the frozen tower
            assert torch.equal(tensor, start[key]), key
        else:
            torch.testing.assert_close(tensor, reference[key], rtol=0, atol=WEIGHT_ATOL)


# -- the pieces, without training -------------------------------------------------------------
def test_one_backend_per_training_and_no_skip_under_deepspeed_in_stage_one() -> None:
    import copy

    from defaults import DEFAULT_CONFIG

    from sherlock.config import cross_field_problems

    config = copy.deepcopy(DEFAULT_CONFIG)
    assert cross_field_problems(config) == []
    config["preference"]["common"]["deepspeed"] = "config/deepspeed/ds_z3.json"
    config["preference"]["online"]["fsdp"] = "full_shard auto_wrap"
    config["sft"]["common"]["fsdp_config"] = "config/fsdp/fsdp2.json"
    config["sft"]["r0"].update(deepspeed="config/deepspeed/ds_z3.json", nonfinite_steps="skip")
    assert cross_field_problems(config) == [
        "sft.r0.fsdp_config: set without fsdp",
        "sft.r0.nonfinite_steps: skip is not possible under DeepSpeed in LLaMA-Factory, whose "
        "trainer steps inside backward; use stop",
        "sft.sherlock_sft.fsdp_config: set without fsdp",
        "preference.online: deepspeed and fsdp both set; choose one backend",
    ]


def test_zero3_on_gloo_gets_no_persistent_parameters_and_gpus_keep_theirs() -> None:
    from sherlock.preference.sharding import check_one_backend, deepspeed_config

    path = str(ROOT / "config" / "deepspeed" / "ds_z3.json")
    assert deepspeed_config(path, gloo=False) == path
    on_cpu = deepspeed_config(path, gloo=True)
    assert on_cpu["zero_optimization"]["stage3_param_persistence_threshold"] == 0
    assert on_cpu["zero_optimization"]["stage"] == 3
    with pytest.raises(ValueError, match="both deepspeed and fsdp"):
        check_one_backend({"deepspeed": path, "fsdp": "full_shard"})


def test_stage_one_launch_is_llamafactorys_and_names_the_rows_of_a_step(tmp_path: Path) -> None:
    from sherlock.sft.launch import run_arguments, step_records, torchrun_command

    assert torchrun_command(["run.yaml"], {}, device_count=1) is None
    assert torchrun_command(["run.yaml"], {"LOCAL_RANK": "0"}, device_count=8) is None
    command = torchrun_command(["run.yaml"], {"MASTER_PORT": "29500"}, device_count=8)
    assert command[1:] == [
        "--nnodes=1",
        "--node_rank=0",
        "--nproc_per_node=8",
        "--master_addr=127.0.0.1",
        "--master_port=29500",
        "-m",
        "sherlock.sft.launch",
        "run.yaml",
    ]
    data = tmp_path / "d.json"
    data.write_text(json.dumps([{"id": f"r{i}"} for i in range(5)]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {"file_name": str(data)}}))
    run = tmp_path / "run.yaml"
    run.write_text(
        yaml.safe_dump(
            {
                "dataset": "d",
                "dataset_dir": str(tmp_path),
                "per_device_train_batch_size": 2,
                "disable_shuffling": True,
                "nonfinite_steps": "skip",
            }
        )
    )
    config, policy = run_arguments(run, ["report_to=tensorboard"])
    assert policy == "skip" and "nonfinite_steps" not in config  # ours, not LLaMA-Factory's
    assert config["report_to"] == "tensorboard"
    assert step_records(config, step=2, world=1) == ["r2", "r3"]
    assert step_records(config, step=2, world=2) == ["r4", "r0", "r1", "r2"]  # wraps, as epochs do
    assert step_records({**config, "disable_shuffling": False}, step=1, world=1) == []
