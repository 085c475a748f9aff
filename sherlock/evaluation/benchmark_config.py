"""The benchmarks a config lists, resolved (data folder, format, metric), and checked before any
job: a missing file stops the run naming it and where to get it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sherlock.evaluation.metrics import metric_for

JSONL = "jsonl"
VLMEVALKIT = "vlmevalkit"


def _under(folder: str | None, path: str | None) -> str | None:
    if path is None or folder is None or os.path.isabs(path):
        return path
    return os.path.join(folder, path)


def resolved_benchmarks(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name → {path, image_root, format, metric} with relative paths under ``data_dir``; a
    benchmark set to null is left out (how a config drops one that a preset lists)."""
    folder = evaluation.get("data_dir")
    out = {}
    for name, spec in evaluation["benchmarks"].items():
        if spec is None:
            continue
        form = spec.get("format") or JSONL
        path = _under(folder, spec["path"])
        out[name] = {
            "path": path,
            "image_root": _under(folder, spec.get("image_root")),
            "format": form,
            "metric": metric_for(path, form, spec.get("metric")),
        }
    return out


def vlmevalkit_download(folder: str, datasets: list[str]) -> str:
    """How VLMEvalKit fetches its dataset files into ``folder`` (its LMUData)."""
    names = ", ".join(repr(name) for name in datasets)
    return (
        f"VLMEvalKit downloads its datasets into $LMUData (the folder must exist): `mkdir -p "
        f'{folder} && LMUData={folder} python -c "from vlmeval.dataset import build_dataset; '
        f'[build_dataset(name) for name in ({names},)]"`; or set evaluation.data_dir to the '
        "folder that already holds them; or leave a benchmark out with a config file saying "
        "`evaluation: {benchmarks: {<name>: null}}`"
    )


def check_benchmark_files(benchmarks: dict[str, dict[str, Any]]) -> list[str]:
    """One line per configured benchmark whose file is missing (resolved form), then how to get
    the missing VLMEvalKit files."""
    problems = []
    missing_tsv: dict[str, list[str]] = {}
    for name, spec in benchmarks.items():
        path = spec["path"]
        if os.path.isfile(path):
            continue
        if spec.get("format") == VLMEVALKIT:
            dataset = Path(path).stem
            missing_tsv.setdefault(str(Path(path).parent), []).append(dataset)
            problems.append(
                f"evaluation.benchmarks.{name}: no file {path} (VLMEvalKit's dataset {dataset})"
            )
        else:
            problems.append(
                f"evaluation.benchmarks.{name}: no file {path} (a benchmark JSONL, "
                "docs/evaluation.md)"
            )
    problems += [vlmevalkit_download(folder, names) for folder, names in missing_tsv.items()]
    return problems


def judge_problems(benchmarks: dict[str, dict[str, Any]], judge: dict[str, Any]) -> list[str]:
    """A benchmark scored by the judge needs evaluation.judge.model."""
    judged = [name for name, spec in benchmarks.items() if spec["metric"] == "judge"]
    if judged and not judge.get("model"):
        return [
            f"evaluation.judge.model: required by {', '.join(judged)} (metric judge: a local "
            "text model extracts the open answers)"
        ]
    return []
