"""What a run needs that is not here yet, found when the workflow is parsed.

A plan never needs it: ``snakemake -n`` with any preset works on a fresh clone (no data, no
models, no vLLM environment, no benchmark files) and lists what is missing once, at the top,
each item with how to get it. A real run stops before its first job when a job it would run
needs any of it, naming all of them at once (``stop_message``, called by the workflow's
``onstart`` with the jobs it is about to run). A job that will not run (its outputs are built)
needs nothing: deleting the source data after a build stops nothing.

Each item names the rules whose jobs need it (and, for one benchmark or the base checkpoint,
the wildcard value), in the workflow's vocabulary: rule names as rules/*.smk define them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sherlock.config import ConfigError, generation_stack, interpreter, stack_problem
from sherlock.config_paths import _HUB_ID, hub_offline, model_problem, workflow_file
from sherlock.data.prompts import REFINE_WORDINGS, refine_choice
from sherlock.evaluation.benchmark_config import (
    VLMEVALKIT,
    resolved_benchmarks,
    vlmevalkit_download,
)

# The rules whose jobs run a model by the generation backend (their shard jobs included).
GENERATING = ("sherlock_sft_data", "offline_prefs", "candidates", "rejected", "evaluate")
GENERATING_JOBS = (*GENERATING, *(f"{rule}_shard" for rule in GENERATING))
SFT_TRAININGS = {
    "common": ("r0", "sft", "perception"),
    "r0": ("r0",),
    "sherlock_sft": ("sft",),
    "perception": ("perception",),
}
PREFERENCE_TRAININGS = {
    "common": ("offline", "iter_model"),
    "offline": ("offline",),
    "online": ("iter_model",),
}
# The jobs that read the refine prompt of each place (prompts.refine.<place>).
REFINE_READERS = {
    "sft_data": ("sherlock_sft_data", "sherlock_sft_data_shard"),
    "preference": ("offline_prefs", "offline_prefs_shard", "rejected", "rejected_shard")
    + ("offline", "iter_model"),
    "candidates": ("candidates", "candidates_shard"),
    "evaluation": ("evaluate", "evaluate_shard"),
}
LLAVA_COT_HUB = "Xkev/LLaVA-CoT-100k"


@dataclass(frozen=True)
class Missing:
    """One thing a job needs that is not here: what (naming the config key), how to get it,
    and which jobs need it (``rules`` None: every job)."""

    problem: str
    fix: str
    rules: tuple[str, ...] | None
    wildcards: tuple[tuple[str, str], ...] = field(default=())

    def needed_by(self, rule: str, wildcards: Mapping[str, str]) -> bool:
        if self.rules is not None and rule not in self.rules:
            return False
        return all(wildcards.get(key, value) == value for key, value in self.wildcards)


def _model(
    key: str,
    value: str,
    rules: tuple[str, ...],
    environ: Mapping[str, str],
    cache_dir: str | None,
    wildcards=(),
) -> list[Missing]:
    problem = model_problem(key, value, environ, cache_dir)
    if problem is None:
        return []
    if _HUB_ID.match(value) and hub_offline(environ):
        fix = f"hf download {value} (or set downloads.models: true), then plan again"
    else:
        fix = "put the model folder there, or give a Hugging Face hub id (org/name)"
    return [Missing(problem, fix, rules, tuple(wildcards))]


def _file(key: str, path: str, fix: str, rules, wildcards=()) -> list[Missing]:
    if os.path.isfile(path):
        return []
    what = "a folder, not a file" if os.path.isdir(path) else "no such file"
    return [Missing(f"{key}: {what}: {path}", fix, rules, tuple(wildcards))]


def _folder(key: str, path: str, fix: str, rules, wildcards=()) -> list[Missing]:
    if os.path.isdir(path):
        return []
    return [Missing(f"{key}: no such folder: {path}", fix, rules, tuple(wildcards))]


def source_fix(config: dict[str, Any]) -> str:
    source = config["source"]
    if source["format"] != "llava_cot":
        return "put the file there, or set source.path"
    return (
        f"set downloads.source: true (a job fetches {LLAVA_COT_HUB} from the Hugging Face hub "
        "into source.image_root and joins its image archive), or fetch it yourself: "
        f"hf download {LLAVA_COT_HUB} --repo-type dataset --local-dir {source['image_root']}, "
        "then join image.zip.part-* into image.zip and unzip it there"
    )


def missing_inputs(
    config: dict[str, Any],
    workflow_dir: str | os.PathLike[str],
    conda: bool,
    downloads: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    cache_dir: str | None = None,
) -> list[Missing]:
    """Everything a job of ``config`` needs that is missing here (``downloads``: the files a
    download job of this run will fetch, which are therefore not missing)."""
    environ = os.environ if environ is None else environ
    fetched = {os.path.normpath(path) for path in downloads}
    missing: list[Missing] = []
    base = config["base_model"]["path"]
    if base != "tiny" and os.path.normpath(base) not in fetched:
        # the evaluation of checkpoint "base" loads it too
        missing += _model(
            "base_model.path",
            base,
            ("r0", "sft", "evaluate", "evaluate_shard"),
            environ,
            cache_dir,
            wildcards=(("checkpoint", "base"),),
        )
    judge = config["online"]["judge"]
    if judge["kind"] == "llm" and judge.get("model") and judge["model"] != "tiny":
        missing += _model("online.judge.model", judge["model"], ("chosen",), environ, cache_dir)
    for stage, trainings in (("sft", SFT_TRAININGS), ("preference", PREFERENCE_TRAININGS)):
        for section, values in config[stage].items():
            for key, fix in (
                ("deepspeed", "give a DeepSpeed JSON file (config/deepspeed/ has two)"),
                ("fsdp_config", "give an FSDP JSON file (config/fsdp/fsdp2.json)"),
            ):
                if values and values.get(key):
                    path = workflow_file(values[key], workflow_dir)
                    missing += _file(f"{stage}.{section}.{key}", path, fix, trainings[section])
    missing += _deepspeed_package(config, conda)
    source = config["source"]
    if source["format"] != "synthetic":
        if os.path.normpath(source["path"]) not in fetched:
            readers = ("source_records", "whole_turns")
            missing += _file("source.path", source["path"], source_fix(config), readers)
            missing += _folder(
                "source.image_root",
                source["image_root"],
                source_fix(config),
                readers,
            )
    evaluation = config["evaluation"]
    benchmarks = resolved_benchmarks(evaluation)
    missing += _benchmarks(benchmarks, fetched)
    judged = [name for name, spec in benchmarks.items() if spec["metric"] == "judge"]
    if judged:
        model = evaluation["judge"].get("model")
        if model:
            missing += _model(
                "evaluation.judge.model", model, ("judge_answers",), environ, cache_dir
            )
        # (no judge model at all is a config error: sherlock.evaluation.benchmark_config)
    if evaluation.get("seed_study"):
        study = workflow_file(evaluation["seed_study"], workflow_dir)
        fix = "run benchmarks/demo_study.py, or set evaluation.seed_study: null"
        missing += _file("evaluation.seed_study", study, fix, ("seed_study",))
        figure = str(Path(study).with_suffix(".png"))
        missing += _file(
            "evaluation.seed_study (its figure beside it)", figure, fix, ("seed_study",)
        )
    for name, model in (evaluation.get("models") or {}).items():
        if os.path.normpath(model) not in fetched:
            missing += _model(
                f"evaluation.models.{name}",
                model,
                ("evaluate", "evaluate_shard", "vlmevalkit_predictions"),
                environ,
                cache_dir,
                wildcards=(("checkpoint", name),),
            )
    refine = config["prompts"].get("refine")
    custom: dict[tuple[str, str], tuple[str, ...]] = {}  # (key, file) → the jobs reading it
    for place, readers in REFINE_READERS.items():
        choice = refine_choice(refine, place)
        if choice and choice not in REFINE_WORDINGS:  # a custom file
            key = f"prompts.refine.{place}" if isinstance(refine, Mapping) else "prompts.refine"
            custom[key, choice] = custom.get((key, choice), ()) + readers
    for (key, path), readers in custom.items():
        fix = "write the prompt there, or name a shipped wording (clean, trailing_spaces)"
        missing += _file(key, path, fix, readers)
    missing += _interpreters(config, conda)
    return missing


def _benchmarks(benchmarks: dict[str, dict[str, Any]], fetched: set[str]) -> list[Missing]:
    missing = []
    absent = {
        name: spec
        for name, spec in benchmarks.items()
        if not os.path.isfile(spec["path"]) and os.path.normpath(spec["path"]) not in fetched
    }
    folders: dict[str, list[str]] = {}  # one way to get a folder's VLMEvalKit files, all at once
    for spec in absent.values():
        if spec["format"] == VLMEVALKIT:
            folders.setdefault(str(Path(spec["path"]).parent), []).append(Path(spec["path"]).stem)
    for name, spec in absent.items():
        path = spec["path"]
        if spec["format"] == VLMEVALKIT:
            dataset = Path(path).stem
            problem = (
                f"evaluation.benchmarks.{name}: no file {path} (VLMEvalKit's dataset {dataset})"
            )
            fix = vlmevalkit_download(str(Path(path).parent), folders[str(Path(path).parent)])
            rules: tuple[str, ...] = ("vlmevalkit_benchmark",)
        else:
            problem = f"evaluation.benchmarks.{name}: no file {path} (a benchmark JSONL)"
            fix = (
                "write it (docs/evaluation.md), or leave it out: "
                f"evaluation: {{benchmarks: {{{name}: null}}}}"
            )
            rules = ("evaluate", "evaluate_shard")
        missing.append(Missing(problem, fix, rules, (("benchmark", name),)))
    for name, spec in benchmarks.items():
        if spec["image_root"]:
            missing += _folder(
                f"evaluation.benchmarks.{name}.image_root",
                spec["image_root"],
                "put the benchmark's pictures there",
                ("evaluate", "evaluate_shard", "vlmevalkit_benchmark"),
                (("benchmark", name),),
            )
    return missing


def _deepspeed_package(config: dict[str, Any], conda: bool) -> list[Missing]:
    """DeepSpeed in the Python running Snakemake when a training uses it (the training stack
    runs there unless python.train or --sdm conda says otherwise)."""
    if conda or config["python"]["train"]:
        return []
    rules = sorted(
        {
            rule
            for stage, trainings in (("sft", SFT_TRAININGS), ("preference", PREFERENCE_TRAININGS))
            for section, values in config[stage].items()
            if values and values.get("deepspeed")
            for rule in trainings[section]
        }
    )
    if not rules or importlib.util.find_spec("deepspeed") is not None:
        return []
    return [
        Missing(
            "deepspeed: a training of this config uses DeepSpeed (a `deepspeed` key), which the "
            "Python running Snakemake lacks",
            "pip install -e '.[train,deepspeed]' (envs/train.yaml has it under --sdm conda)",
            tuple(rules),
        )
    ]


def _interpreters(config: dict[str, Any], conda: bool) -> list[Missing]:
    missing = []
    generating = (
        *GENERATING_JOBS,
        *(("chosen",) if config["online"]["judge"]["kind"] == "llm" else ()),
        "judge_answers",
    )
    for role, rules in (("train", None), ("generate", generating)):
        try:
            interpreter(config, role, conda)
        except ConfigError as error:
            problem, _, hint = str(error).partition(" (make it with: ")
            fix = hint.rstrip(")") if hint else f"make it, or set python.{role}: null"
            missing.append(Missing(problem, fix, rules))
    if problem := stack_problem(config, conda):
        fix = (
            "run with --sdm conda (envs/vllm.yaml), or name the vLLM environment's Python in "
            "python.generate"
        )
        rules = generating if generation_stack(config) == "vllm" else None
        missing.append(Missing(problem.split(": run with")[0], fix, rules))
    return missing


def _grouped(missing: list[Missing]) -> str:
    """One line per missing thing, the way to get it once per group that shares it."""
    fixes: dict[str, list[str]] = {}
    for item in missing:
        fixes.setdefault(item.fix, []).append(item.problem)
    return "\n".join(
        "".join(f"  - {problem}\n" for problem in problems) + f"      get it: {fix}"
        for fix, problems in fixes.items()
    )


_SHOWN: set[str] = set()


def show_once(text: str) -> None:
    """Print ``text`` to stderr unless this process printed it already: an ablation loads the
    workflow once per run, and runs that agree would say the same thing again."""
    if text not in _SHOWN:
        _SHOWN.add(text)
        print(text, file=sys.stderr)


def plan_warning(missing: list[Missing]) -> str:
    """The block printed at the top of a plan."""
    lines = _grouped(missing)
    return (
        f"WARNING: {len(missing)} thing(s) the planned jobs may need are not here yet. The plan "
        "below is complete; a run stops before its first job if a job it would run needs "
        f"one of them:\n{lines}"
    )


def stop_message(
    missing: list[Missing], jobs: Iterable[tuple[str, Mapping[str, str]]]
) -> str | None:
    """Why a run must not start: every missing item a job about to run needs, or None."""
    jobs = list(jobs)
    needed = [m for m in missing if any(m.needed_by(rule, w) for rule, w in jobs)]
    if not needed:
        return None
    rules = sorted({rule for rule, w in jobs if any(m.needed_by(rule, w) for m in needed)})
    lines = _grouped(needed) + f"\n  (needed by the jobs of: {', '.join(rules)})"
    return f"this run needs {len(needed)} thing(s) that are not here; nothing was started:\n{lines}"
