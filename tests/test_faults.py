"""Fault injection: kill -9 a generation job and a training job mid-run, rerun, lose nothing.

One working directory whose results folder and refine prompt sit under hostile names (spaces,
quotes, ``$(…)``, backticks), with a secret in the environment:

1. the first run is killed (the whole process tree, SIGKILL) while R0 answers D_B, after some
   progress chunks are saved; a second invocation during that run is refused by the lock;
2. the rerun (after ``--unlock``) resumes the generation from the saved chunks and is killed in
   turn during the Sherlock-SFT training, after an intermediate checkpoint;
3. the last rerun resumes the training and finishes.

Then: sherlock_sft.json has exactly two rows per D_B record, no duplicate, and equals an
uninterrupted generation; the SFT model equals an uninterrupted training; no checkpoint or
progress scratch is left; nothing in the hostile names was executed; the secret is nowhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
HOSTILE = "res dir/o'brien \"q\" $(touch pwned_subshell) `touch pwned_backtick`"
SECRET = "hf_SECRET_test_token_0123456789"
CHUNKS = 8  # 64 D_B records in chunks of 8

pytestmark = pytest.mark.workflow


def _env() -> dict[str, str]:
    return {**os.environ, "HF_TOKEN": SECRET, "WANDB_API_KEY": SECRET}


def _command(workdir: Path, *args: str) -> list[str]:
    return [*SNAKEMAKE, "--directory", str(workdir), "--configfile", "faults.yaml", *args]


def _run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(workdir, *args), capture_output=True, text=True, cwd=workdir, env=_env()
    )


def _kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL Snakemake and every job it started, at once: what a preemption does."""
    tree = [psutil.Process(process.pid)]
    try:
        tree += tree[0].children(recursive=True)
    except psutil.NoSuchProcess:
        pass
    for member in tree:
        try:
            member.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=30)


def _run_until(workdir: Path, condition, what: str, timeout: float = 900) -> dict:
    """Start the build, poll ``condition`` (returns a dict when met), then kill everything."""
    log = open(workdir / "snakemake_attempts.log", "a")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        _command(workdir, "--cores", "2", "sft"),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env=_env(),
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            met = condition()
            if met is not None:
                _kill_tree(process)
                return met
            if process.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            _kill_tree(process)
        log.close()
    tail = (workdir / "snakemake_attempts.log").read_text()[-3000:]
    raise AssertionError(f"the run ended or timed out before {what}:\n{tail}")


@pytest.fixture(scope="module")
def faulted_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    workdir = tmp_path_factory.mktemp("faults")
    prompt = workdir / "prompt $(touch pwned_prompt)" / "refine 'x'.txt"
    prompt.parent.mkdir()
    shutil.copy(ROOT / "sherlock" / "data" / "prompts" / "refine.txt", prompt)
    (workdir / "faults.yaml").write_text(
        yaml.safe_dump(
            {
                "results_dir": HOSTILE,
                "prompts": {"refine": str(prompt)},
                "generation": {"batch_size": 8, "chunk_size": 8},
                "checkpointing": {"save_steps": 20, "save_total_limit": 2, "resume": True},
            }
        )
    )
    results = workdir / HOSTILE
    progress = results / "data" / "sherlock_sft.json.progress"
    scratch = results / "models" / "sft.partial"
    facts: dict = {"workdir": workdir, "results": results, "prompt": prompt}

    def second_invocation_refused():
        if not list((workdir / ".snakemake" / "locks").glob("*")):
            return None
        return {"concurrent": _run(workdir, "--cores", "1", "sft")}

    def chunks_saved():
        done = sorted(progress.glob("call*-chunk*.json"))
        return {"chunks": len(done)} if len(done) >= 2 else None

    def sft_checkpoint_saved():
        states = list(scratch.glob("checkpoint-*/trainer_state.json"))
        return {"checkpoints": sorted(p.parent.name for p in states)} if states else None

    def lock_check_then_chunks():
        if "concurrent" not in facts:
            met = second_invocation_refused()
            if met:
                facts.update(met)
        return chunks_saved()

    facts.update(_run_until(workdir, lock_check_then_chunks, "two progress chunks were saved"))
    facts["sft_json_after_first_kill"] = (results / "data" / "sherlock_sft.json").exists()
    facts["stale_lock"] = _run(workdir, "--cores", "1", "sft")
    assert _run(workdir, "--unlock").returncode == 0
    facts.update(_run_until(workdir, sft_checkpoint_saved, "an SFT checkpoint was saved"))
    facts["sft_model_after_second_kill"] = (results / "models" / "sft").exists()
    assert _run(workdir, "--unlock").returncode == 0
    facts["final"] = _run(workdir, "--cores", "2", "sft")
    return facts


def test_a_second_invocation_is_refused_while_a_run_holds_the_directory(faulted_build):
    concurrent = faulted_build["concurrent"]
    assert concurrent.returncode != 0
    assert "cannot be locked" in concurrent.stdout + concurrent.stderr
    stale = faulted_build["stale_lock"]  # after kill -9 the lock stays until --unlock
    assert stale.returncode != 0 and "--unlock" in stale.stdout + stale.stderr


def test_the_killed_generation_resumes_without_losing_or_repeating_a_record(faulted_build):
    final, results = faulted_build["final"], faulted_build["results"]
    assert final.returncode == 0, final.stderr[-4000:]
    assert not faulted_build["sft_json_after_first_kill"]  # complete or absent
    log = (results / "logs" / "sherlock_sft_data.log").read_text()
    resumed = [line for line in log.splitlines() if line.startswith("generation: ")]
    assert len(resumed) == 1, log[-2000:]
    counts = [int(word) for word in resumed[0].replace(",", " ").split() if word.isdigit()]
    assert counts[0] >= faulted_build["chunks"] and counts[0] + counts[1] == CHUNKS, resumed
    rows = json.loads((results / "data" / "sherlock_sft.json").read_text())
    d_b = json.loads((results / "data" / "D_B.json").read_text())
    assert len(rows) == 2 * len(d_b) == 128
    assert len({row["id"] for row in rows}) == len(rows)
    assert sorted(row["source_id"] for row in rows if row["kind"] == "refine") == sorted(
        row["id"] for row in d_b
    )
    assert not (results / "data" / "sherlock_sft.json.progress").exists()

    # the same generation, uninterrupted and unchunked, writes the very same file
    again = faulted_build["workdir"] / "uninterrupted.json"
    subprocess.run(
        [sys.executable, str(ROOT / "workflow_scripts" / "build_sherlock_sft.py")]
        + ["--model", f"{HOSTILE}/models/r0", "--d-b", f"{HOSTILE}/data/D_B.json"]
        + ["--batch-size", "8", "--max-new-tokens", "160", "--temperature", "0.7"]
        + ["--top-p", "1.0", "--seed", "20251", "--refine-prompt", str(faulted_build["prompt"])]
        + ["--output", str(again)],
        check=True,
        capture_output=True,
        cwd=faulted_build["workdir"],  # the rows name the model as the rule does, relative
    )
    assert json.loads(again.read_text()) == rows


def test_the_killed_training_resumes_from_its_checkpoint_to_the_same_model(faulted_build):
    final, results = faulted_build["final"], faulted_build["results"]
    assert final.returncode == 0, final.stderr[-4000:]
    assert not faulted_build["sft_model_after_second_kill"]  # complete or absent
    log = (results / "logs" / "sft.log").read_text()
    resumed = re.search(r"resuming training from (.+) \(step (\d+)\)", log)
    assert resumed, log[-2000:]
    assert Path(resumed.group(1)).name in faulted_build["checkpoints"]
    model = results / "models" / "sft"
    assert (model / "config.json").is_file() and (model / "model.safetensors").is_file()
    assert not list(model.glob("checkpoint-*"))
    assert not (results / "models" / "sft.partial").exists()
    # state of the resumed run: every step once
    state = json.loads((model / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert steps == sorted(set(steps)) and state["global_step"] == 160

    # the same training, uninterrupted, gives the same weights: the run file as it ran (kept
    # beside the model: the rule's run file with its launch settings), its own scratch folder
    whole = faulted_build["workdir"] / "sft_uninterrupted"
    subprocess.run(
        [sys.executable, str(ROOT / "workflow_scripts" / "train_llamafactory.py")]
        + ["--yaml", str(model / "sherlock_launched_run.yaml")]
        + ["--launch", json.dumps({"output_dir": f"{whole}.partial"})]
        + ["--model-dir", str(whole), "--no-resume"],
        check=True,
        capture_output=True,
        cwd=faulted_build["workdir"],
        env=_env(),
    )
    expected = load_file(str(whole / "model.safetensors"))
    resumed = load_file(str(model / "model.safetensors"))
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-5)


def test_hostile_names_reach_no_shell_and_secrets_reach_no_file(faulted_build):
    workdir = faulted_build["workdir"]
    assert faulted_build["final"].returncode == 0
    executed = [p for p in workdir.rglob("*") if p.name.startswith("pwned")]
    assert executed == [] and not list(ROOT.glob("pwned*"))
    assert (faulted_build["results"] / "models" / "sft").is_dir()  # the odd path was used as is
    leaks = []
    for path in workdir.rglob("*"):
        if path.is_file() and SECRET.encode() in path.read_bytes():
            leaks.append(path)
    assert leaks == []
