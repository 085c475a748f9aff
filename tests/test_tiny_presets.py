"""The two tiny presets, built for real: the paper preset's code paths on a tiny Llama-3.2-Vision
(Mllama) and the Qwen2.5-VL preset's on a tiny Qwen2.5-VL.

``tiny_mllama`` builds its whole default target (Stage I with LLaMA-Factory's ``mllama``
template, Stage II and two online iterations with the Sherlock trainer under the ``paper``
recipe, the llm judge on a tiny text model, two generation shards, every checkpoint evaluated,
the report's figures), laid over with a smaller test size so the run stays within minutes; then
``sherlock-correct`` answers on its ``iter2``. ``tiny_qwen25vl`` builds through ``offline``.
The presets' own sizes are built by benchmarks/workflow_times.py (benchmarks/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_workflow import ROOT, planned_jobs, sherlock_correct, snakemake

pytestmark = pytest.mark.workflow

PRESETS = ROOT / "config" / "presets"
# The presets' training sets (smaller ones leave the tiny models unable to close a corrected
# answer, and Stage III keeps nothing), fewer pool items and evaluated questions: the test checks
# the code paths, not the scores. TensorBoard on, so every training's live curves are checked.
SMALLER = """
synthetic: {n_test: 40}
splits: {pool: 32}
online: {target_pairs: 32, min_pairs: 2}
evaluation: {max_items: 6}
tracking: {report_to: tensorboard}
"""
# Through `offline` only, nothing depends on the models' quality: smaller training sets too.
SMALLEST = SMALLER.replace("splits: {pool: 32}", "splits: {d_a: 96, d_b: 32, pool: 32}")
TRAININGS = ("r0", "sft", "offline", "iter1", "iter2")


def _build(workdir: Path, preset: str, target: str, overlay: str = SMALLER) -> Path:
    (workdir / "smaller.yaml").write_text(overlay)
    config = ["--configfile", str(PRESETS / preset), "smaller.yaml"]
    result = snakemake(workdir, "--cores", "2", target, *config)
    (workdir / "run.log").write_text(result.stdout + result.stderr)
    assert planned_jobs(workdir, target, *config) == {}  # complete: nothing left to do
    return workdir / "results" / preset.removesuffix(".yaml")


@pytest.fixture(scope="module")
def mllama_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("tiny_mllama"), "tiny_mllama.yaml", "all")


def test_mllama_preset_builds_every_stage_on_the_paper_paths(mllama_run: Path) -> None:
    base = json.loads((mllama_run / "models" / "base" / "tiny_model.json").read_text())
    assert base["architecture"] == "mllama" and base["template"] == "mllama"
    r0_yaml = yaml.safe_load((mllama_run / "llamafactory" / "r0" / "train.yaml").read_text())
    assert r0_yaml["template"] == "mllama"
    for stage in TRAININGS:
        config = json.loads((mllama_run / "models" / stage / "config.json").read_text())
        assert config["architectures"] == ["MllamaForConditionalGeneration"], stage
        # every training's curves, live in TensorBoard's folder of the run
        assert list((mllama_run / "tracking" / stage).rglob("events.out.tfevents.*")), stage
    # the preference stages froze the vision tower and projector, as the paper preset does
    for stage in ("offline", "iter1", "iter2"):
        log = json.loads((mllama_run / "models" / stage / "sherlock_training.json").read_text())
        assert log["frozen_parameters"] > 0, stage
    # the paper recipe drew the pairs: truncation points 1-4, ε in [0, 1]
    prefs = json.loads((mllama_run / "data" / "offline_prefs.json").read_text())
    assert prefs and {row["truncation"] for row in prefs} <= {1, 2, 3, 4}
    assert all(0.0 <= row["noise_level"] <= 1.0 for row in prefs)
    # the llm judge ran on the tiny text model built here
    judge = json.loads((mllama_run / "models" / "judge" / "tiny_judge.json").read_text())
    assert judge["heldout_accuracy"] > 0.5
    for k in (1, 2):
        path = mllama_run / "online" / f"iter{k}" / "chosen_summary.yaml"
        summary = yaml.safe_load(path.read_text())
        assert summary["judge"] == "llm" and summary["judge_model"].endswith("models/judge")
        assert summary["kept"] >= 2 and summary["judged"] >= summary["kept"]
        # the generating steps ran as two shards each, gathered into one file
        shard_logs = sorted((mllama_run / "logs").glob(f"candidates_iter{k}_shard*.log"))
        assert len(shard_logs) == 2
    # every checkpoint evaluated, every turn scored
    rows = [
        line.split(",") for line in (mllama_run / "eval" / "accuracy.csv").read_text().splitlines()
    ]
    scored = {(row[0], row[2]) for row in rows[1:]}
    assert scored == {(c, str(t)) for c in ("base", *TRAININGS) for t in range(4)}


def test_sherlock_correct_answers_on_the_mllama_iter2(mllama_run: Path) -> None:
    out = sherlock_correct(mllama_run, rounds=2, max_new_tokens=96)
    assert out.count("--- answer: ") == 3


def test_qwen25vl_preset_builds_through_offline(tmp_path: Path) -> None:
    results = _build(tmp_path, "tiny_qwen25vl.yaml", "offline", SMALLEST)
    for stage in ("r0", "sft", "offline"):
        config = json.loads((results / "models" / stage / "config.json").read_text())
        assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"], stage
    prefs = json.loads((results / "data" / "offline_prefs.json").read_text())
    log = json.loads((results / "models" / "offline" / "sherlock_training.json").read_text())
    assert log["records"] == len(prefs) > 0
    assert [e for e in log["log_history"] if "loss/sc_rejected" in e]
