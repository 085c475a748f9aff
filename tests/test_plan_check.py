"""A plan before any download (sherlock.plan_check) and the opt-in download jobs
(sherlock.downloads): what is missing is listed, a run needing it stops before its first job."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from defaults import DEFAULT_CONFIG

from sherlock.downloads import fetch_llava_cot, fetch_model, join_parts
from sherlock.plan_check import missing_inputs, plan_warning, stop_message

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.name for p in (ROOT / "config" / "presets").glob("*.yaml"))
OFFLINE = {"HF_HUB_OFFLINE": "1"}


def paper_like_config() -> dict:
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["base_model"]["path"] = "org/base-model"
    config["source"].update(format="llava_cot", path="data/x/train.jsonl", image_root="data/x")
    config["evaluation"]["data_dir"] = "data/LMUData"
    config["evaluation"]["benchmarks"] = {
        "MMStar": {"path": "MMStar.tsv", "format": "vlmevalkit"},
        "MME": {"path": "MME.tsv", "format": "vlmevalkit"},
    }
    return config


def test_what_is_missing_is_named_with_how_to_get_it_and_who_needs_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = paper_like_config()
    missing = missing_inputs(config, ROOT, conda=False, environ=OFFLINE, cache_dir=str(tmp_path))
    problems = [m.problem for m in missing]
    assert problems[0].startswith("base_model.path: org/base-model is neither a local folder")
    assert "source.path: no such file: data/x/train.jsonl" in problems
    assert "source.image_root: no such folder: data/x" in problems
    warning = plan_warning(missing)
    assert warning.count("get it: VLMEvalKit downloads") == 1  # one command for the folder
    assert "('MMStar', 'MME',)" in warning
    assert "hf download org/base-model" in warning
    # who needs what: Stage I needs the data and the model, not the benchmark files
    stage_one = [("source_records", {}), ("r0", {}), ("splits", {})]
    message = stop_message(missing, stage_one)
    assert "nothing was started" in message
    assert "needed by the jobs of: r0, source_records" in message
    assert "MMStar" not in message
    evaluation = [
        ("vlmevalkit_benchmark", {"benchmark": "MME"}),
        ("evaluate", {"checkpoint": "r0"}),
    ]
    message = stop_message(missing, evaluation)
    assert "MME.tsv" in message and "MMStar.tsv" not in message and "base_model" not in message
    assert "base_model.path" in stop_message(missing, [("evaluate", {"checkpoint": "base"})])
    assert stop_message(missing, [("splits", {}), ("r0_config", {})]) is None
    # what a download job of the run fetches is not missing
    fetched = missing_inputs(config, ROOT, conda=False, environ=OFFLINE, cache_dir=str(tmp_path),
                             downloads=["data/x/train.jsonl", "org/base-model"])  # fmt: skip
    assert not any(m.problem.startswith(("source.path", "base_model")) for m in fetched)


def test_the_embedded_default_misses_nothing():
    assert missing_inputs(copy.deepcopy(DEFAULT_CONFIG), ROOT, conda=False, environ=OFFLINE) == []


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory"]
        + [str(workdir), *args],
        capture_output=True,
        text=True,
        cwd=workdir,
    )


@pytest.mark.workflow
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_plans_on_a_clean_checkout(tmp_path, preset):
    """No data, no models (HF_HUB_OFFLINE is set and nothing is cached), no vLLM environment,
    no benchmark file: the plan of everything works, and lists what is missing."""
    result = snakemake(tmp_path, "-n", "all", "--quiet", "rules", "--configfile",
                       str(ROOT / "config" / "presets" / preset))  # fmt: skip
    said = result.stdout + result.stderr
    assert result.returncode == 0, said[-3000:]
    assert "Job stats:" in said and "iter_model" in said
    if preset in ("paper_llama32v.yaml", "qwen25vl_7b.yaml"):
        assert "WARNING:" in said and "source.path: no such file" in said
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_downloads_are_jobs_of_the_plan(tmp_path):
    """downloads.source and downloads.models: the plan fetches LLaVA-CoT-100k and the hub models
    before the jobs that read them, and lists them no more as missing."""
    opt_in = tmp_path / "downloads.yaml"
    opt_in.write_text("downloads: {source: true, models: true}\n")
    paper = str(ROOT / "config" / "presets" / "paper_llama32v.yaml")
    result = snakemake(tmp_path, "-n", "-p", "sft", "--configfile", paper, str(opt_in))
    said = result.stdout + result.stderr
    assert result.returncode == 0, said[-3000:]
    source = said.split("rule download_source:")[1].split("\n\n")[0]
    assert "download.py llava-cot --repo Xkev/LLaVA-CoT-100k" in source
    assert "--jsonl data/LLaVA-CoT-100k/train.jsonl --image-root data/LLaVA-CoT-100k" in source
    base = "data/models/meta-llama/Llama-3.2-11B-Vision-Instruct"
    model = said.split("rule download_model:")[1].split("\n\n")[0]
    assert f"model --repo meta-llama/Llama-3.2-11B-Vision-Instruct --output {base}" in model
    # the trainings load it from there; the run file still names the hub id's model folder
    assert f'"model_name_or_path": "{base}"' in said.split("rule r0:")[1].split("\n\n")[0]
    assert "source.path: no such file" not in said and "base_model.path" not in said
    assert said.index("rule download_source:") < said.index("rule source_records:")


def test_a_hub_model_download_is_complete_or_absent(tmp_path):
    def download(repo_id: str, local_dir: str) -> str:
        Path(local_dir).mkdir(parents=True)
        (Path(local_dir) / "config.json").write_text(json.dumps({"repo": repo_id}))
        return local_dir

    folder = fetch_model("org/name", tmp_path / "models" / "org" / "name", download)
    assert json.loads((folder / "config.json").read_text()) == {"repo": "org/name"}
    assert not (tmp_path / "models" / "org" / "name.partial").exists()

    def broken(repo_id: str, local_dir: str) -> str:
        Path(local_dir).mkdir(parents=True)
        return local_dir

    with pytest.raises(RuntimeError, match="no config.json"):
        fetch_model("org/other", tmp_path / "models" / "org" / "other", broken)
    assert not (tmp_path / "models" / "org" / "other").exists()


def fake_llava_cot(scratch: Path, prefix: str = "") -> None:
    """The dataset as published: train.jsonl and a zip archive split into parts."""
    images = {f"{prefix}chartqa/{i}.png": bytes([i]) * 10 for i in range(5)}
    archive = scratch / "image.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for name, data in images.items():
            out.writestr(name, data)
    data = archive.read_bytes()
    for index, start in enumerate(range(0, len(data), 200)):
        (scratch / f"image.zip.part-a{'abcdefghij'[index]}").write_bytes(data[start : start + 200])
    archive.unlink()
    rows = [{"id": str(i), "image": f"chartqa/{i}.png", "conversations": []} for i in range(5)]
    (scratch / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_llava_cot_is_joined_unpacked_and_checked(tmp_path):
    calls = []

    def download(**kwargs) -> str:
        calls.append(kwargs)
        fake_llava_cot(Path(kwargs["local_dir"]))
        return kwargs["local_dir"]

    root = tmp_path / "data" / "LLaVA-CoT-100k"
    jsonl = fetch_llava_cot(root / "train.jsonl", root, download=download)
    assert calls[0]["repo_id"] == "Xkev/LLaVA-CoT-100k" and calls[0]["repo_type"] == "dataset"
    assert calls[0]["allow_patterns"] == ["train.jsonl", "image.zip.part-*"]
    assert len(jsonl.read_text().splitlines()) == 5
    assert (root / "chartqa" / "4.png").read_bytes() == bytes([4]) * 10
    assert sorted(p.name for p in root.iterdir()) == ["chartqa", "train.jsonl"]  # parts gone

    def nested(**kwargs) -> str:  # an archive whose pictures sit one folder deeper
        fake_llava_cot(Path(kwargs["local_dir"]), prefix="images/")
        return kwargs["local_dir"]

    other = tmp_path / "other"
    with pytest.raises(RuntimeError, match=r"only 0 of the first 5 records' images"):
        fetch_llava_cot(other / "train.jsonl", other, download=nested)
    assert not (other / "train.jsonl").exists()  # complete or absent


def test_parts_join_in_name_order(tmp_path):
    for name, text in (("x.part-ab", "B"), ("x.part-aa", "A"), ("x.part-ac", "C")):
        (tmp_path / name).write_text(text)
    joined = join_parts(sorted(tmp_path.glob("x.part-*"), reverse=True), tmp_path / "x")
    assert joined.read_text() == "ABC"
