"""Every path of the configuration, checked when the workflow is parsed (the workflow lists what is
missing at the top of its plan and stops a run before its first job: ``sherlock.plan_check``).

A missing file would otherwise fail late: ``base_model.path: /nonexistent`` would plan and start
the data jobs, then fail inside the first training. What is checked, each problem naming the key:

- models (``base_model.path`` and ``online.judge.model`` unless "tiny", every outside model of
  ``evaluation.models``, and ``evaluation.judge.model`` when a benchmark is judged): a local
  folder; or a Hugging Face hub id (``org/name``, no such local folder). A hub id is accepted
  as it is when the hub may be asked (``HF_HUB_OFFLINE`` unset: only the hub can tell, and a
  plan must not need the network); with ``HF_HUB_OFFLINE`` set it must be in the local cache,
  since nothing can fetch it later.
- files: the DeepSpeed configs (``deepspeed`` of every sft and preference section) and
  ``evaluation.seed_study`` with its figure (a relative path of these is read from the workflow
  folder), ``source.path`` and the custom files of ``prompts.refine``; folders:
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


# The config keys that name a path (benchmark files, interpreters and the DeepSpeed package are
# checked too, with how to get them, but are not paths of the config in this sense).
_PATH_KEYS = ("base_model.path", "online.judge.model", "evaluation.judge.model", "source.",
              "evaluation.models.",
              "evaluation.seed_study", "prompts.refine", "sft.", "preference.")  # fmt: skip


def path_problems(
    config: dict[str, Any],
    workflow_dir: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    cache_dir: str | None = None,
) -> list[str]:
    """One line per path of ``config`` that a job could not use, naming its key (the path
    items of ``sherlock.plan_check.missing_inputs``, which the workflow lists in its plan)."""
    from sherlock.plan_check import missing_inputs

    missing = missing_inputs(config, workflow_dir, conda=True, environ=environ,
                             cache_dir=cache_dir)  # fmt: skip
    return [
        item.problem
        for item in missing
        if item.problem.startswith(_PATH_KEYS)
        or re.match(r"evaluation\.benchmarks\.[^:]+\.image_root:", item.problem)
    ]


def check_paths(config: dict[str, Any], workflow_dir: str | os.PathLike[str]) -> None:
    """Raise ConfigError listing every unusable path of ``config``."""
    problems = path_problems(config, Path(workflow_dir))
    if problems:
        lines = "\n  ".join(problems)
        raise ConfigError(f"paths in the configuration that no job could use:\n  {lines}")
