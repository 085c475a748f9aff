"""Where a run's files live when runs share their stages (config ``stages_dir``).

A single run writes every file under ``results_dir`` (``results/models/r0``). With ``stages_dir``
set, a file goes to the folder of the stage that writes it, named by the stage and a fingerprint
of everything the stage depends on (``<stages_dir>/sft-3f2a9c01d4e6/models/r0``); only the run's
own summaries (accuracy tables, report pages and figures) stay under ``results_dir``. Runs whose
settings agree up to a stage (the variants of an ablation, for one seed) name the same folders
for it, so the stage is built once for all of them (docs/ablations.md).

A stage's fingerprint is a hash of the run's config without the keys that only later stages
read (``FIRST_READ``) and without how the work runs (``EXECUTION``). Each stage reads every key
an earlier stage reads, so the hash covers the stages upstream of it too. A key is listed in
``FIRST_READ`` only when no rule of an earlier stage reads it: a key left out costs work (a stage
built again that could have been shared), never a wrong share.

Which stage writes a file is decided by its path relative to the results folder, through
``ROUTES``: one table for the whole workflow. A path no route knows stops the run, so a new
output is given its stage instead of landing in a folder another run shares.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from sherlock.runtime.fingerprints import digest

PIPELINE: tuple[str, ...] = ("data", "sft", "offline", "online")

# The keys a stage is the first to read (dotted paths). "data": synthetic data, the splits, the
# base model (tiny, perception) and the held-out benchmark; "sft": Stage I; "offline": Stage II;
# "online": Stage III.
FIRST_READ: dict[str, tuple[str, ...]] = {
    "data": (),
    "sft": ("sft.r0", "sft.sherlock_sft", "generation", "generation.sherlock_sft", "prompts"),
    "offline": (
        "offline",
        "perturbation",
        "preference",
        "intermediates",
        "generation.continuation",
    ),
    "online": (
        "online.target_pairs",
        "online.min_pairs",
        "online.judge",
        "tiny_judge",
        "preference.online",
        "generation.candidates",
    ),
}
# Read by the evaluation of a checkpoint only (the benchmarks, rounds, the scoring's sampling).
EVALUATION_KEYS: tuple[str, ...] = ("evaluation", "generation.evaluation")
# What no evaluating job reads: which checkpoints are listed, and the report's extras.
REPORT_ONLY: tuple[str, ...] = (
    "evaluation.checkpoints",
    "evaluation.compare_with_paper",
    "evaluation.seed_study",
)
# How and where work runs, never what it computes.
EXECUTION: tuple[str, ...] = (
    "results_dir",
    "stages_dir",
    "ablations",
    "resources",
    "tracking",
    "python",
)
# What the evaluation of a checkpoint reads besides what built the checkpoint: the generation
# settings common to every stage and its own sampling (not the other stages' sampling sections).
READ_BY_EVALUATION = ("evaluation", "generation", "generation.evaluation", "prompts")

# The placeholder of a path whose stage depends on a wildcard (an evaluation's {checkpoint}):
# the rule's outputs start with <stages_dir>/{stage_folder}, constrained to this run's folders.
WILDCARD = "stage_folder"

# (path relative to the results folder, what decides its stage): a stage name; "model": the
# stage of the model named by the group `model`; "eval": the evaluation of the checkpoint named
# by the group `checkpoint`; "run": the run's own folder (results_dir); "wildcard": the folder of
# whichever stage the rule's wildcard ({stage}, {run}) names. First match wins.
# {CHECKPOINT} is filled with the names of the run's checkpoints (or the wildcard).
_MODEL = r"(?P<model>base|base_init|r0|sft|offline|iter(?:\d+|\{k\})|judge)(?:[._/].*)?"
_SHARD = r"(?:_shard[^/]*)?"
ROUTES: tuple[tuple[str, str], ...] = (
    (r"synthetic/.+", "data"),
    (r"data/sherlock_sft\.json", "sft"),
    (r"data/offline_[^/]+", "offline"),
    (r"data/[^/]+", "data"),
    (rf"(?:models|tracking)/{_MODEL}", "model"),
    (r"llamafactory/perception/.+", "data"),
    # Stage I's data with images the workflow scaled: one rule for r0, sft and perception
    (r"llamafactory/\{run\}/.+", "wildcard"),
    (r"llamafactory/(?:r0|sft)/.+", "sft"),
    (r"runs/offline/.+", "offline"),
    (r"runs/iter(?:\d+|\{k\})/.+", "online"),
    (r"online/.+", "online"),
    # a LoRA stage's merged model (rules/lora.smk): one rule for every stage, {stage} a wildcard
    (r"models/\{stage\}", "wildcard"),
    (
        r"(?:logs|benchmarks)/(?:merge_\{stage\}|fitted_stage_one_data_\{run\})\.(?:log|tsv)",
        "wildcard",
    ),
    (r"eval/benchmarks/.+", "benchmarks"),
    (r"eval/vlmevalkit/[^/]+/(?P<checkpoint>{CHECKPOINT})", "eval"),
    (r"eval/[^/]+/(?P<checkpoint>{CHECKPOINT})_[^/]+", "eval"),
    (r"eval/[^/]+", "run"),
    (r"report/[^/]+", "run"),
    (
        r"(?:logs|benchmarks)/(?:synthetic_data|perception_data|perception_config|perception"
        r"|source_records|splits|tiny_model|whole_turns_[^/]+)\.(?:log|tsv)",
        "data",
    ),
    (
        r"(?:logs|benchmarks)/(?:heldout_benchmark|vlmevalkit_benchmark_[^/]+)\.(?:log|tsv)",
        "benchmarks",
    ),
    (
        rf"(?:logs|benchmarks)/(?:r0_config|r0|sft_config|sft|sherlock_sft_data{_SHARD})"
        r"\.(?:log|tsv)",
        "sft",
    ),
    (
        rf"(?:logs|benchmarks)/(?:offline_prefs{_SHARD}|offline_config|offline)\.(?:log|tsv)",
        "offline",
    ),
    (
        r"(?:logs|benchmarks)/(?:(?:candidates|chosen|rejected|iter_config)_iter[^/]+"
        r"|iter(?:\d+|\{k\})|tiny_judge)\.(?:log|tsv)",
        "online",
    ),
    (
        r"(?:logs|benchmarks)/(?:evaluate|judge_answers|vlmevalkit_predictions)_[^/]+_"
        rf"(?P<checkpoint>{{CHECKPOINT}}){_SHARD}\.(?:log|tsv)",
        "eval",
    ),
    (
        r"(?:logs|benchmarks)/(?:accuracy_table|does_it_work|data_report|seed_study"
        r"|training_curves_[^/]+)\.(?:log|tsv)",
        "run",
    ),
)


class StageError(ValueError):
    """A path no route of ``ROUTES`` places in a stage."""


def later_keys(stage: str) -> list[str]:
    """The keys only the stages after ``stage`` (one of ``PIPELINE``) and the evaluation read."""
    later = PIPELINE[PIPELINE.index(stage) + 1 :]
    return [key for name in later for key in FIRST_READ[name]] + list(EVALUATION_KEYS)


def model_stage(name: str) -> str | None:
    """The stage that trains (or builds) a model folder: base → data, r0 and sft → sft, ...;
    None for a name that is not one of the pipeline's models."""
    if name in ("base", "base_init"):
        return "data"
    if name in ("r0", "sft"):
        return "sft"
    if name == "offline":
        return "offline"
    if re.fullmatch(r"iter(\d+|\{k\})|judge", name):
        return "online"
    return None


def without(config: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``config`` without the dotted ``keys`` (missing ones ignored)."""
    pruned = copy.deepcopy(config)
    for key in keys:
        *parents, last = key.split(".")
        section = pruned
        for part in parents:
            section = section.get(part) if isinstance(section, dict) else None
            if section is None:
                break
        if isinstance(section, dict):
            section.pop(last, None)
    return pruned


def removed_keys(stage: str) -> list[str]:
    """What the fingerprint of ``stage`` leaves out: "data" ... "online", "benchmarks" (the
    benchmark files an evaluation reads), "eval-<checkpoint>", or "everything" (all but how the
    work runs)."""
    if stage in PIPELINE:
        return [*EXECUTION, *later_keys(stage)]
    if stage == "benchmarks":
        return [*EXECUTION, *REPORT_ONLY, *(k for k in later_keys("data") if k != "evaluation")]
    if stage.startswith("eval-"):
        model = model_stage(stage.removeprefix("eval-"))
        if model is None:
            return [*EXECUTION, *REPORT_ONLY]
        upstream = [k for k in later_keys(model) if k not in READ_BY_EVALUATION]
        return [*EXECUTION, *REPORT_ONLY, *upstream]
    if stage == "everything":
        return list(EXECUTION)
    raise StageError(f"unknown stage {stage!r}")


def fingerprint(config: dict[str, Any], stage: str) -> str:
    """12 hex digits naming what ``stage`` depends on in ``config``."""
    return digest({"stage": stage, "config": without(config, removed_keys(stage))})[:12]


class StageRouter:
    """Paths of one run whose stages live under ``config["stages_dir"]``.

    ``checkpoints``: the names the run evaluates (base, r0, ..., iterK), so that an evaluation's
    files go to the folder of the checkpoint they score.
    """

    def __init__(self, config: dict[str, Any], checkpoints: Sequence[str]):
        if not config.get("stages_dir"):
            raise ValueError("stages_dir is not set: every file is under results_dir")
        self.config = config
        self.results_dir = config["results_dir"]
        self.stages_dir = config["stages_dir"]
        self.checkpoints = list(checkpoints)
        names = sorted(self.checkpoints, key=len, reverse=True)
        alternatives = "|".join([re.escape("{checkpoint}"), *map(re.escape, names)])
        self._routes = [
            (re.compile(pattern.replace("{CHECKPOINT}", alternatives)), target)
            for pattern, target in ROUTES
        ]
        self._folders: dict[str, str] = {}

    def folder(self, stage: str) -> str:
        """The folder name of a stage of this run (under stages_dir): <stage>-<fingerprint>."""
        if stage not in self._folders:
            self._folders[stage] = f"{stage}-{fingerprint(self.config, stage)}"
        return self._folders[stage]

    def stage_of(self, relative: str) -> str:
        """The stage of a path relative to the results folder: a stage name, "eval-<name>",
        "run", or the wildcard placeholder for "eval-{checkpoint}"."""
        for pattern, target in self._routes:
            match = pattern.fullmatch(relative)
            if match is None:
                continue
            if target == "model":
                return model_stage(match["model"])  # type: ignore[return-value]
            if target == "wildcard":
                return WILDCARD
            if target == "eval":
                name = match["checkpoint"]
                return WILDCARD if name == "{checkpoint}" else f"eval-{name}"
            return target
        raise StageError(
            f"{relative}: no stage writes this path (sherlock/ablations/stages.py, ROUTES): "
            "give it the stage of the rule that writes it"
        )

    def path(self, *parts: str) -> str:
        """Where ``results_dir/<parts>`` of a single run lives in this run."""
        relative = "/".join(part.strip("/") for part in parts)
        stage = self.stage_of(relative)
        if stage == "run":
            return os.path.join(self.results_dir, *parts)
        if stage == WILDCARD:
            return os.path.join(self.stages_dir, "{" + WILDCARD + "}", *parts)
        if stage.startswith("eval-") and stage.removeprefix("eval-") not in self.checkpoints:
            raise StageError(f"{relative}: {stage.removeprefix('eval-')} is not evaluated")
        return os.path.join(self.stages_dir, self.folder(stage), *parts)

    def eval_folders(self) -> list[str]:
        """The folder names of this run's evaluations, one per checkpoint."""
        return [self.folder(self.eval_stage(name)) for name in self.checkpoints]

    @staticmethod
    def eval_stage(checkpoint: str) -> str:
        return f"eval-{checkpoint}"

    def wildcard_constraint(self) -> str:
        """The regular expression {stage_folder} must match: one of this run's evaluation or
        training-stage folders (so a rule never claims another run's files whose settings
        differ)."""
        folders = [*self.eval_folders(), *(self.folder(stage) for stage in PIPELINE[1:])]
        return "|".join(re.escape(folder) for folder in folders)

    def stage_folders(self) -> dict[str, str]:
        """Every folder this run writes to: stage → path (the run's own folder as "run")."""
        stages = [*PIPELINE, "benchmarks", *(self.eval_stage(c) for c in self.checkpoints)]
        folders = {stage: os.path.join(self.stages_dir, self.folder(stage)) for stage in stages}
        return {**folders, "run": self.results_dir}
