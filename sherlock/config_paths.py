"""Every path of the configuration, checked when the workflow is parsed, before any job.

A missing file would otherwise fail late: ``base_model.path: /nonexistent`` plans and starts the
data jobs, then fails inside the first training. What is checked, each problem naming the key:

- models (``base_model.path`` and ``online.judge.model`` unless "tiny", and
  ``evaluation.judge.model`` when a benchmark is judged): a local
  folder; or a Hugging Face hub id (``org/name``, no such local folder). A hub id is accepted
  as it is when the hub may be asked (``HF_HUB_OFFLINE`` unset: only the hub can tell, and a
  plan must not need the network); with ``HF_HUB_OFFLINE`` set it must be in the local cache,
  since nothing can fetch it later.
- files: the DeepSpeed configs (``deepspeed`` of every sft and preference section) and
  ``evaluation.seed_study`` with its figure (a relative path of these is read from the workflow
  folder), ``source.path`` and ``prompts.refine``; folders:
  ``source.image_root`` and every benchmark's ``image_root``. Benchmark files themselves are
  checked with how to get them (``sherlock.evaluation.benchmark_config``).
  Other relative paths are read from the working directory, as the jobs read them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sherlock.config import ConfigError
from sherlock.evaluation.benchmark_config import resolved_benchmarks

# org/name as the hub spells repository ids; anything else that is not a folder is a bad path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE = {"1", "ON", "YES", "TRUE"}  # as huggingface_hub reads its flags


def hub_offline(environ: Mapping[str, str]) -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids asking the hub."""
    return environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def in_hub_cache(repo_id: str, cache_dir: str | None = None) -> bool:
    """Whether the local Hugging Face cache holds a snapshot of ``repo_id`` (its config.json)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir), str)


def model_problem(
    key: str, value: str, environ: Mapping[str, str], cache_dir: str | None = None
) -> str | None:
    """Why the model ``value`` of config key ``key`` cannot be loaded, or None."""
    if os.path.isdir(value):
        return None
    if os.path.exists(value):
        return f"{key}: {value} is a file, not a model folder"
    if not _HUB_ID.match(value):
        return f"{key}: no such folder: {value}"
    if hub_offline(environ) and not in_hub_cache(value, cache_dir):
        return (
            f"{key}: {value} is neither a local folder nor in the local Hugging Face cache, and "
            f"HF_HUB_OFFLINE is set: download it first (hf download {value}), "
            "give a local folder, or unset HF_HUB_OFFLINE"
        )
    return None


def workflow_file(path: str, workflow_dir: str | os.PathLike[str]) -> str:
    """A file that belongs to the workflow (a DeepSpeed config): a relative path is read from
    the workflow folder, so a run from another directory (``--directory``) finds it."""
    return path if os.path.isabs(path) else os.path.join(workflow_dir, path)


def _file(key: str, path: str) -> str | None:
    if os.path.isfile(path):
        return None
    what = "a folder, not a file" if os.path.isdir(path) else "no such file"
    return f"{key}: {what}: {path}"


def _folder(key: str, path: str) -> str | None:
    return None if os.path.isdir(path) else f"{key}: no such folder: {path}"


def path_problems(
    config: dict[str, Any],
    workflow_dir: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    cache_dir: str | None = None,
) -> list[str]:
    """One line per path of ``config`` that a job could not use, naming its key."""
    environ = os.environ if environ is None else environ
    problems = []
    base = config["base_model"]["path"]
    if base != "tiny":
        problems.append(model_problem("base_model.path", base, environ, cache_dir))
    judge = config["online"]["judge"]
    if judge["kind"] == "llm" and judge.get("model") and judge["model"] != "tiny":
        problems.append(model_problem("online.judge.model", judge["model"], environ, cache_dir))
    for stage in ("sft", "preference"):
        for section, values in config[stage].items():
            for key in ("deepspeed", "fsdp_config"):
                if values and values.get(key):
                    path = workflow_file(values[key], workflow_dir)
                    problems.append(_file(f"{stage}.{section}.{key}", path))
    source = config["source"]
    if source["format"] != "synthetic":
        if source.get("path"):
            problems.append(_file("source.path", source["path"]))
        if source.get("image_root"):
            problems.append(_folder("source.image_root", source["image_root"]))
    # Benchmark files are checked where they are resolved (under evaluation.data_dir), with how
    # to get a missing one: sherlock.evaluation.benchmark_config.check_benchmark_files.
    evaluation = config["evaluation"]
    for name, benchmark in resolved_benchmarks(evaluation).items():
        if benchmark["image_root"]:
            key = f"evaluation.benchmarks.{name}.image_root"
            problems.append(_folder(key, benchmark["image_root"]))
    if any(b["metric"] == "judge" for b in resolved_benchmarks(evaluation).values()):
        judge_model = evaluation["judge"].get("model")
        if judge_model:
            problems.append(
                model_problem("evaluation.judge.model", judge_model, environ, cache_dir)
            )
    if evaluation.get("seed_study"):
        study = workflow_file(evaluation["seed_study"], workflow_dir)
        problems.append(_file("evaluation.seed_study", study))
        figure = str(Path(study).with_suffix(".png"))
        problems.append(_file("evaluation.seed_study (its figure beside it)", figure))
    if config["prompts"].get("refine"):
        problems.append(_file("prompts.refine", config["prompts"]["refine"]))
    return [problem for problem in problems if problem]


def check_paths(config: dict[str, Any], workflow_dir: str | os.PathLike[str]) -> None:
    """Raise ConfigError listing every unusable path of ``config``."""
    problems = path_problems(config, Path(workflow_dir))
    if problems:
        lines = "\n  ".join(problems)
        raise ConfigError(f"paths in the configuration that no job could use:\n  {lines}")
