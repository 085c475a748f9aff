# What the ablation's rules (rules/ablations.smk) need (docs/ablations.md): the config checked,
# the runs (every variant at every seed, sherlock.ablations.runs) and what is read of each run.
import glob
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the `sherlock` package, installed or not

from sherlock.ablations.runs import AblationError, ablation_runs, baseline_of
from sherlock.config import ConfigError, validate_config

SCHEMA = Path(workflow.basedir) / "config" / "schema.yaml"
try:
    validate_config(config, SCHEMA)
    ABLATION_RUNS = ablation_runs(config)
    for _run in ABLATION_RUNS:
        try:
            validate_config(_run.config, SCHEMA)
        except ConfigError as error:
            raise ConfigError(f"ablations.variants.{_run.variant}: {error}") from None
    BASELINE = baseline_of(config["ablations"])
except (ConfigError, AblationError) as error:
    raise WorkflowError(str(error)) from None

ABLATION_DIR = config["results_dir"]
VARIANTS = list(config["ablations"]["variants"])
SEEDS = list(config["ablations"]["seeds"])
BOOTSTRAP = config["ablations"]["bootstrap"]


def ablation_path(*parts):
    """A file of the ablation itself (comparison, studies, their report pages)."""
    return os.path.join(ABLATION_DIR, *parts)


def runs_of(variant):
    return [entry for entry in ABLATION_RUNS if entry.variant == variant]


def scored_items(entry):
    """benchmark → checkpoint → the file with each question's status per turn (judged ones for
    open answers) of one run."""
    space = RUN[entry.name]
    return {
        benchmark: {
            name: space.res(
                "eval",
                benchmark,
                f"{name}_{'judged' if benchmark in space.JUDGED_BENCHMARKS else 'responses'}.json",
            )
            for name in space.CHECKPOINTS
        }
        for benchmark in space.BENCHMARKS
    }


def study_runs(variant):
    """seed → what the study of ``variant`` reads of it: its accuracy table, the online
    acceptance summaries, and the folders whose job timings it sums."""
    out = {}
    for entry in runs_of(variant):
        space = RUN[entry.name]
        out[entry.seed] = {
            "accuracy": space.res("eval", "accuracy.json"),
            "chosen": [
                space.res("online", f"iter{k}", "chosen_summary.yaml") for k in space.ITERATIONS
            ],
            "folders": space.STAGES.stage_folders(),
        }
    return out


def plan_summary():
    """The runs, and how many distinct folders each stage has over them (each is built once)."""
    folders = defaultdict(set)
    for entry in ABLATION_RUNS:
        for stage, folder in RUN[entry.name].STAGES.stage_folders().items():
            if stage != "run":
                folders[stage].add(folder)
    return (
        f"Ablation {ABLATION_DIR}: {len(VARIANTS)} variants × {len(SEEDS)} seeds = "
        f"{len(ABLATION_RUNS)} runs; stages (each built once per distinct folder, under "
        f"{ABLATION_RUNS[0].config['stages_dir']}):\n  "
        + ", ".join(f"{stage} {len(found)}" for stage, found in folders.items())
    )
