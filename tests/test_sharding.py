"""Sharded generation: N shard jobs plus a gathering job write what one unsharded job writes.

Each generating script runs (a) once, unsharded and unchunked, and (b) as two shard jobs (each
generating every other chunk into its own folder) followed by the gathering job, with sampled
decoding on the tiny model. Outputs must be equal, and the gathering job must generate nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sherlock.data.records import strip_image_token
from sherlock.data.sharegpt import prompt_row, sft_row

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow_scripts"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, synthetic_dir: Path, records: list[dict]) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("shard_inputs")
    rows, prompts, bench = [], [], []
    for record in records[:10]:
        image = str(synthetic_dir / record["image"])
        question = strip_image_token(record["conversations"][0]["value"])
        answer = record["conversations"][1]["value"]
        rows.append(sft_row(record["id"], question, answer, image))
        prompts.append(prompt_row(record["id"], question, image))
        bench.append({"id": record["id"], "image": image, "question": question, "answer": "red"})
    (folder / "d_b.json").write_text(json.dumps(rows))
    (folder / "pool.json").write_text(json.dumps(prompts))
    (folder / "bench.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bench))
    perturbation = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["perturbation"]
    (folder / "perturbation.json").write_text(json.dumps(perturbation))
    return {name: folder / name for name in ("d_b.json", "pool.json", "bench.jsonl")} | {
        "perturbation": folder / "perturbation.json"
    }


def _case(name: str, inputs: dict[str, Path], out: Path) -> tuple[list[str], dict[str, Path]]:
    """The script's own arguments and its outputs under ``out``."""
    if name == "build_sherlock_sft":
        outputs = {"output": out / "sft.json"}
        return ["--d-b", str(inputs["d_b.json"])], outputs
    if name == "build_candidates":
        outputs = {"output": out / "candidates.json"}
        return ["--pool", str(inputs["pool.json"]), "--iteration", "1"], outputs
    if name == "build_offline_prefs":
        outputs = {"output": out / "prefs.json", "summary": out / "summary.yaml"}
        perturbation = inputs["perturbation"].read_text()
        return ["--data", str(inputs["d_b.json"]), "--perturbation", perturbation], outputs
    outputs = {"responses": out / "responses.json", "summary": out / "scores.json"}
    arguments = ["--checkpoint-name", "tiny", "--benchmark", str(inputs["bench.jsonl"])]
    return [*arguments, "--benchmark-name", "b", "--rounds", "2"], outputs


def _run(script: str, arguments: list[str], cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{script}.py"), *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def _flags(outputs: dict[str, Path]) -> list[str]:
    return [word for flag, path in outputs.items() for word in (f"--{flag}", str(path))]


@pytest.mark.parametrize(
    "script",
    ["build_sherlock_sft", "build_candidates", "build_offline_prefs", "evaluate_checkpoint"],
)
def test_two_shards_and_a_gather_write_what_one_job_writes(
    script: str, inputs: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    sampling = ["--model", str(tiny_model_dir), "--batch-size", "2", "--max-new-tokens", "12"]
    sampling += ["--temperature", "0.8", "--top-p", "0.95", "--seed", "5"]
    images = ["--image-dir", str(tmp_path / "images")] if script == "build_offline_prefs" else []

    whole = tmp_path / "whole"
    whole.mkdir()
    arguments, expected = _case(script, inputs, whole)
    _run(script, [*sampling, *arguments, *images, *_flags(expected)], tmp_path)
    expected_text = {name: path.read_text() for name, path in expected.items()}
    expected_images = {p.name: p.read_bytes() for p in (tmp_path / "images").glob("*")}
    shutil.rmtree(tmp_path / "images", ignore_errors=True)

    chunked = [*sampling, "--chunk-size", "2"]
    shard_dirs = []
    for shard in range(2):
        folder = tmp_path / f"shard{shard}"
        _, unused = _case(script, inputs, folder)  # a shard writes none of these
        shard_images = ["--image-dir", str(folder / "images")] if images else []
        log = _run(
            script,
            [*chunked, *arguments, *shard_images, *_flags(unused)]
            + ["--shard", str(shard), "--shards", "2", "--shard-dir", str(folder)],
            tmp_path,
        )
        assert f"shard {shard} of 2" in log
        assert not any(path.exists() for path in unused.values())
        shard_dirs.append(str(folder))
    gathered = tmp_path / "gathered"
    gathered.mkdir()
    _, outputs = _case(script, inputs, gathered)
    log = _run(
        script,
        [*chunked, *arguments, *images, *_flags(outputs), "--saved-chunks", *shard_dirs],
        tmp_path,
    )
    assert " generated" in log and ", 0 generated" in log  # everything came from the shards
    for name, path in outputs.items():
        assert path.read_text() == expected_text[name], name
    assert {p.name: p.read_bytes() for p in (tmp_path / "images").glob("*")} == expected_images
    if script == "build_offline_prefs":
        assert len(expected_images) == 10
