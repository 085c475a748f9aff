"""Every path of the configuration is checked before any job (sherlock.config_paths)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
from defaults import DEFAULT_CONFIG

from sherlock.config_paths import model_problem, path_problems, workflow_file

ROOT = Path(__file__).resolve().parents[1]
ONLINE: dict[str, str] = {}  # HF_HUB_OFFLINE unset
OFFLINE = {"HF_HUB_OFFLINE": "1"}


def _cache_with(cache: Path, repo_id: str) -> None:
    """A local Hugging Face cache holding one snapshot of ``repo_id``, laid out as the hub
    client lays it out."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")


def test_models_are_folders_or_hub_ids_the_run_can_reach(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    _cache_with(cache, "org/cached-model")
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "weights.bin").write_text("")
    key = "base_model.path"
    assert model_problem(key, str(folder), OFFLINE, str(cache)) is None
    assert "no such folder: /nonexistent" in model_problem(key, "/nonexistent", ONLINE)
    assert "no such folder" in model_problem(key, "./models/sft", ONLINE)
    assert "is a file" in model_problem(key, str(tmp_path / "weights.bin"), ONLINE)
    # a hub id: only the hub knows, so it plans while the hub may be asked ...
    assert model_problem(key, "org/missing-model", ONLINE, str(cache)) is None
    # ... and must be in the local cache when it may not
    assert model_problem(key, "org/cached-model", OFFLINE, str(cache)) is None
    problem = model_problem(key, "org/missing-model", OFFLINE, str(cache))
    assert problem.startswith("base_model.path: org/missing-model ")
    assert "HF_HUB_OFFLINE is set" in problem
    assert model_problem(key, "org/missing-model", {"HF_HUB_OFFLINE": "0"}, str(cache)) is None


def test_every_path_of_the_config_is_checked_and_named(tmp_path: Path) -> None:
    config = copy.deepcopy(DEFAULT_CONFIG)
    assert path_problems(config, ROOT, OFFLINE) == []  # the embedded default builds its own
    config["online"]["judge"].update(kind="llm", model="tiny")  # built here too (tiny_judge)
    assert path_problems(config, ROOT, OFFLINE) == []
    config["base_model"]["path"] = "/nonexistent"
    config["online"]["judge"].update(kind="llm", model=str(tmp_path / "judge"))
    config["sft"]["r0"]["deepspeed"] = "config/deepspeed/ds_z3.json"  # in the workflow folder
    config["preference"]["online"]["deepspeed"] = "config/deepspeed/missing.json"
    config["source"].update(format="llava_cot", path=str(tmp_path / "train.jsonl"))
    config["source"]["image_root"] = str(tmp_path / "images")
    config["evaluation"]["benchmarks"] = {
        "mmstar": {"path": str(tmp_path / "mmstar.jsonl"), "image_root": str(tmp_path / "mm")},
        "mmvet": {"path": str(tmp_path / "MMVet.tsv"), "format": "vlmevalkit"},  # judged
        "dropped": None,  # a config leaving a preset's benchmark out
    }
    config["evaluation"]["judge"]["model"] = str(tmp_path / "answer_judge")
    config["prompts"]["refine"] = str(tmp_path / "refine.txt")
    config["evaluation"]["seed_study"] = "benchmarks/results/no_study.json"  # workflow folder
    config["evaluation"]["models"] = {"theirs": str(tmp_path / "theirs"), "hub": "org/a-vlm"}
    problems = path_problems(config, ROOT, ONLINE)
    keys = sorted(problem.split(":")[0] for problem in problems)
    assert keys == [
        "base_model.path",
        "evaluation.benchmarks.mmstar.image_root",  # its file: check_benchmark_files
        "evaluation.judge.model",
        "evaluation.models.theirs",
        "evaluation.seed_study",
        "evaluation.seed_study (its figure beside it)",
        "online.judge.model",
        "preference.online.deepspeed",
        "prompts.refine",
        "source.image_root",
        "source.path",
    ]
    missing = str(ROOT / "config" / "deepspeed" / "missing.json")
    assert f"preference.online.deepspeed: no such file: {missing}" in problems
    for folder in ("judge", "images", "mm", "answer_judge", "theirs"):
        (tmp_path / folder).mkdir()
    for name in ("train.jsonl", "mmstar.jsonl", "refine.txt"):
        (tmp_path / name).write_text("")
    config["base_model"]["path"] = "org/a-hub-model"
    config["preference"]["online"]["deepspeed"] = str(ROOT / "config" / "deepspeed" / "ds_z3.json")
    config["evaluation"]["seed_study"] = "benchmarks/results/demo_study.json"  # the demo's
    assert path_problems(config, ROOT, ONLINE) == []
    # per place: a shipped wording is no file; a custom file is checked under its own key
    config["prompts"]["refine"] = {
        "sft_data": "trailing_spaces",
        "preference": "clean",
        "candidates": str(tmp_path / "refine.txt"),
        "evaluation": str(tmp_path / "missing_refine.txt"),
    }
    assert [p.split(":")[0] for p in path_problems(config, ROOT, ONLINE)] == [
        "prompts.refine.evaluation"
    ]


def test_deepspeed_files_are_read_from_the_workflow_folder(tmp_path: Path) -> None:
    assert workflow_file("config/deepspeed/ds_z3.json", ROOT) == str(
        ROOT / "config" / "deepspeed" / "ds_z3.json"
    )
    assert workflow_file("/abs/ds.json", ROOT) == "/abs/ds.json"


@pytest.mark.workflow
def test_a_missing_base_model_is_listed_by_the_plan_and_stops_the_run(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("base_model: {path: /nonexistent}\n")

    def snakemake(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), *args]
            + ["--directory", str(tmp_path), "--configfile", "bad.yaml"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )

    plan = snakemake("-n")
    said = plan.stdout + plan.stderr
    assert plan.returncode == 0 and "Job stats" in said
    assert "base_model.path: no such folder: /nonexistent" in plan.stderr
    run = snakemake("--cores", "1")
    said = run.stdout + run.stderr
    assert run.returncode != 0 and "nothing was started" in said
    assert "base_model.path: no such folder: /nonexistent" in said.split("nothing was started")[1]
    assert not (tmp_path / "results").exists()
