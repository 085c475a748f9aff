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
