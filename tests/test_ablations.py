"""Ablations (docs/ablations.md): each stage's folder named by what it depends on
(sherlock.ablations.stages), the runs of an ablation config (sherlock.ablations.runs), and the
plan of an ablation of the tiny default: every stage built once for all the runs that share it."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from sherlock.ablations.runs import AblationError, ablation_runs, overlay
from sherlock.ablations.stages import StageError, StageRouter
from tests.defaults import DEFAULT_CONFIG
from tests.test_workflow import DEMO, planned_jobs

ROOT = Path(__file__).resolve().parents[1]
BETA_REFINE = ROOT / "config" / "ablations" / "beta_refine.yaml"
DEMO_STUDY = ROOT / "config" / "ablations" / "demo_study.yaml"
CHECKPOINTS = ["base", "r0", "sft", "offline", "iter1", "iter2"]
STAGES = ["data", "sft", "offline", "online", "benchmarks", *(f"eval-{c}" for c in CHECKPOINTS)]


def router(overrides: dict | None = None) -> StageRouter:
    config = overlay(DEFAULT_CONFIG, {"stages_dir": "stages", **(overrides or {})})
    return StageRouter(config, CHECKPOINTS)


def changed(overrides: dict) -> set[str]:
    """The stages whose folder a change of the default config moves."""
    before, after = router(), router(overrides)
    return {stage for stage in STAGES if before.folder(stage) != after.folder(stage)}


def test_a_stage_folder_moves_only_when_a_setting_it_reads_changes():
    preference = {"preference": {"common": {"pref_beta_refine": 0.25}}}
    later = {"offline", "online", "eval-offline", "eval-iter1", "eval-iter2"}
    assert changed(preference) == later
    assert changed({"generation": {"candidates": {"temperature": 0.7}}}) == {
        "online",
        "eval-iter1",
        "eval-iter2",
    }
    assert changed({"sft": {"r0": {"learning_rate": 1e-3}}}) == set(STAGES) - {
        "data",
        "benchmarks",
        "eval-base",
    }
    evaluation = set(STAGES) - {"data", "sft", "offline", "online"}
    assert changed({"evaluation": {"rounds": 2}}) == evaluation
    assert changed({"generation": {"evaluation": {"temperature": 0.5}}}) == evaluation - {
        "benchmarks"
    }
    assert changed({"seed": 1}) == set(STAGES)
    # how the work runs is never part of a fingerprint; nor what the report shows
    assert changed({"resources": {"train": {"mem_mb": 1}}, "tracking": {"report_to": "x"}}) == set()
    assert changed({"evaluation": {"seed_study": "study.json", "checkpoints": ["r0"]}}) == set()
    assert changed({"results_dir": "elsewhere"}) == set()


def test_paths_go_to_their_stage_folder_and_the_report_stays_in_the_run():
    paths = router()
    assert paths.path("models", "r0") == f"stages/{paths.folder('sft')}/models/r0"
    assert paths.path("data", "D_A.json").startswith(f"stages/{paths.folder('data')}/")
    assert paths.path("data", "offline_prefs.json").startswith(f"stages/{paths.folder('offline')}/")
    assert paths.path("logs", "candidates_iter{k}_shard{shard}.log").startswith(
        f"stages/{paths.folder('online')}/"
    )
    assert paths.path("eval", "heldout", "iter2_responses.json") == (
        f"stages/{paths.folder('eval-iter2')}/eval/heldout/iter2_responses.json"
    )
    # an evaluation's pattern takes the folder of the checkpoint it scores from a wildcard
    assert paths.path("eval", "{benchmark}", "{checkpoint}_responses.json") == (
        "stages/{stage_folder}/eval/{benchmark}/{checkpoint}_responses.json"
    )
    assert re.fullmatch(paths.wildcard_constraint(), paths.folder("eval-sft"))
    assert paths.path("eval", "accuracy.json") == "results/eval/accuracy.json"
    assert paths.path("report", "training_r0.png") == "results/report/training_r0.png"
    with pytest.raises(StageError, match="models/unknown: no stage writes this path"):
        paths.path("models", "unknown")


@pytest.mark.parametrize(
    ("path", "stage"),
    [
        ("synthetic/perception_images", "data"),
        ("models/base_init", "data"),
        ("models/base.partial", "data"),
        ("llamafactory/perception/train.yaml", "data"),
        ("logs/sherlock_sft_data_shard{shard}.log", "sft"),
        ("models/sft_adapter", "sft"),
        ("benchmarks/offline_prefs_shard{shard}.tsv", "offline"),
        ("runs/iter{k}/train.yaml", "online"),
        ("models/judge", "online"),
        ("logs/tiny_judge.log", "online"),
        ("tracking/iter1", "online"),
        ("eval/benchmarks/{benchmark}_conversion.json", "benchmarks"),
        ("logs/vlmevalkit_benchmark_{benchmark}.log", "benchmarks"),
        ("eval/vlmevalkit/MMStar/iter2", "eval-iter2"),
        ("eval/MM_Vet/r0_judged_scores.json", "eval-r0"),
        ("logs/evaluate_{benchmark}_{checkpoint}_shard{shard}.log", "stage_folder"),
        ("logs/judge_answers_{benchmark}_{checkpoint}.log", "stage_folder"),
        ("eval/vlmevalkit/{benchmark}/{checkpoint}", "stage_folder"),
        ("logs/training_curves_{stage}.log", "run"),
    ],
)
def test_every_kind_of_path_the_rules_write_has_its_stage(path, stage):
    assert router().stage_of(path) == stage


def test_each_run_of_an_ablation_is_the_config_with_its_variant_and_seed():
    config = overlay(
        DEFAULT_CONFIG,
        {
            "results_dir": "out",
            "ablations": {
                "seeds": [1, 2],
                "variants": {"a": {}, "b": {"preference": {"common": {"pref_beta_refine": 0.25}}}},
            },
        },
    )
    runs = ablation_runs(config)
    assert [(run.variant, run.seed) for run in runs] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    b2 = runs[3].config
    assert b2["seed"] == 2 and b2["results_dir"] == "out/runs/b/seed2"
    assert b2["stages_dir"] == "out/stages" and b2["ablations"]["seeds"] == []
    assert b2["preference"]["common"]["pref_beta_refine"] == 0.25
    assert (
        b2["preference"]["common"]["pref_beta"]
        == DEFAULT_CONFIG["preference"]["common"]["pref_beta"]
    )  # laid over mapping by mapping, as a preset
    config["ablations"]["variants"]["c"] = {"seed": 5}
    with pytest.raises(AblationError, match="ablations.variants.c.seed: set by the ablation"):
        ablation_runs(config)


def stage_jobs(jobs: dict[str, int], prefixes: list[str]) -> Counter:
    """Planned jobs per rule of the workflow, summed over the runs (module prefixes)."""
    total: Counter = Counter()
    for name, count in jobs.items():
        prefix = next((p for p in prefixes if name.startswith(p + "_")), None)
        total[name.removeprefix(prefix + "_") if prefix else name] += count
    return total


@pytest.mark.workflow
def test_two_variants_two_seeds_plan_each_shared_stage_once(tmp_path):
    """β_r 0.025 against 0.25 over two seeds, and a third variant with no overrides: Stage I
    (and the data, the base model, their evaluations) once per seed; Stage II, Stage III and the
    evaluation of their checkpoints once per variant and seed; the variant without overrides
    adds only its own report files."""
    same = tmp_path / "same.yaml"
    same.write_text("ablations:\n  variants:\n    same: {}\n")
    jobs = planned_jobs(tmp_path, "ablations", "--configfile", str(BETA_REFINE), str(same))
    runs = [f"{v}_seed{s}" for v in ("beta_r_0025", "beta_r_025", "same") for s in (20251, 20252)]
    total = stage_jobs(jobs, runs)
    for rule in ("synthetic_data", "tiny_model", "splits", "r0", "sherlock_sft_data", "sft"):
        assert total[rule] == 2, rule  # one per seed
    for rule in ("offline_prefs", "offline"):
        assert total[rule] == 4, rule  # one per variant that changes it, per seed
    assert total["iter_model"] == total["candidates"] == 4 * 2  # two iterations each
    # base, r0, sft once per seed; offline, iter1, iter2 once per changed variant and seed
    assert total["evaluate"] == 2 * 3 + 4 * 3
    assert not any(name.startswith("same_") and not _report(name) for name in jobs)
    assert total["accuracy_table"] == 6  # every run has its own tables and pages
    assert jobs["ablation_comparison"] == 1 and jobs["ablation_study"] == 3


def _report(name: str) -> bool:
    return name.split("_", 2)[-1] in {
        "accuracy_table",
        "does_it_work",
        "data_report",
        "training_curves",
        "all",
    }


@pytest.mark.workflow
def test_the_demo_study_is_an_ablation_of_the_demo_over_its_seeds(tmp_path):
    jobs = planned_jobs(tmp_path, "ablations", "--configfile", str(DEMO), str(DEMO_STUDY))
    total = stage_jobs(jobs, [f"demo_seed{s}" for s in (11, 12, 13)])
    assert total["perception"] == total["r0"] == total["offline"] == 3
    assert total["evaluate"] == 3 * len(CHECKPOINTS)
    assert "seed_study" not in total  # the study is the ablation's own page
    assert jobs["ablation_study"] == jobs["ablation_study_page"] == 1
