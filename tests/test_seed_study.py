"""A seed study (benchmarks/demo_study.py's JSON) as tables, and as the report's page."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sherlock.evaluation.seed_study import (
    acceptance_table,
    baseline_table,
    goal_table,
    markdown_table,
    score_table,
)

ROOT = Path(__file__).resolve().parents[1]


def _row(checkpoint: str, turn: int, mean: float, spread: float, distinct: float) -> dict:
    return {
        "checkpoint": checkpoint,
        "turn": turn,
        "mean": mean,
        "spread": spread,
        "seeds": [],
        "distinct_answers": distinct,
        "items": 200,
    }


# two checkpoints, the direct answer and one correction turn
SCORES = [
    _row("r0", 0, 48.5, 3.6, 9.0),
    _row("r0", 1, 0.25, 0.55, 1.0),
    _row("sft", 0, 44.3333, 0.2887, 8.0),
    _row("sft", 1, 46.0, 2.0, 7.6667),
]
CHECKS = [
    {"goal": "R0 answers above the majority-answer rate", "holds": True, "numbers": "48.5 vs 14"},
    {"goal": "iter2 above sft (direct)", "holds": False, "numbers": "36.7 vs 44.3"},
    {"goal": "something not measured", "holds": None, "numbers": ""},
]
STUDY = {
    "seeds": [11, 12],
    "n_test": 1000,
    "max_items": 200,
    "scores": SCORES,
    "baselines": {"majority answer": 14.1667, "majority answer per question type": 39.5},
    "acceptance": {"1": [0.95, 1.0], "2": [0.9208, 0.9917]},
    "checks": CHECKS,
}


def test_scores_are_mean_and_spread_by_turn_with_the_change():
    table = score_table(SCORES)
    assert list(table.columns) == [
        "checkpoint",
        "direct",
        "turn 1",
        "change",
        "distinct answers (direct)",
    ]
    assert table.iloc[0].tolist() == ["r0", "48.5 ± 3.6", "0.2 ± 0.6", "-48.2", "9.0"]
    assert table.iloc[1].tolist() == ["sft", "44.3 ± 0.3", "46.0 ± 2.0", "+1.7", "8.0"]


def test_baselines_goals_and_acceptance_read_as_written():
    assert baseline_table(STUDY["baselines"]).values.tolist() == [
        ["majority answer", "14.2"],
        ["majority answer per question type", "39.5"],
    ]
    assert goal_table(CHECKS)["met"].tolist() == ["yes", "no", "–"]
    # (95.0 + 100.0) / 2 and (92.08 + 99.17) / 2
    assert acceptance_table(STUDY["acceptance"]).values.tolist() == [
        ["iter1", "97.5", "95.0, 100.0"],
        ["iter2", "95.6", "92.1, 99.2"],
    ]
    assert markdown_table(baseline_table({"majority answer": 14.0})) == (
        "| blind baseline | score |\n|---|---|\n| majority answer | 14.0 |"
    )


def test_the_report_page_shows_the_study_and_its_figure(tmp_path: Path):
    study = tmp_path / "demo_study.json"
    study.write_text(json.dumps(STUDY))
    (tmp_path / "demo_study.png").write_bytes(b"\x89PNG not really")
    html, figure = tmp_path / "page" / "seed_study.html", tmp_path / "page" / "seed_study.png"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "workflow_scripts" / "seed_study_page.py"),
            "--study",
            str(study),
            "--html",
            str(html),
            "--figure",
            str(figure),
        ],
        check=True,
        cwd=ROOT,
    )
    page = html.read_text()
    for text in (
        "per seed (11, 12)",
        "200 held-out questions",
        "44.3 ± 0.3",
        "+1.7",
        "39.5",
        "95.0, 100.0",
    ):
        assert text in page, text
    assert figure.read_bytes() == b"\x89PNG not really"


def test_the_committed_study_is_what_the_demo_report_reads():
    study = json.loads((ROOT / "benchmarks" / "results" / "demo_study.json").read_text())
    assert len(study["seeds"]) == 3
    table = score_table(study["scores"])
    assert table["checkpoint"].tolist() == ["base", "r0", "sft", "offline", "iter1", "iter2"]


def test_an_ablation_study_adds_the_paired_claims_and_the_seconds_of_each_stage(tmp_path: Path):
    """workflow_scripts/ablation_study.py on two seeds' files: scores over the seeds, the
    variant's claims from the ablation's paired.json (another variant's left out), and each
    stage's seconds summed from the last line of each benchmark file of its folder; then the
    report page shows the claims with their intervals and the seconds."""

    def accuracy(seed: int, r0: tuple[float, float], sft: tuple[float, float]) -> Path:
        rows = [
            {
                "checkpoint": name,
                "benchmark": "heldout",
                "turn": turn,
                "items": 10,
                "percent": value,
                "distinct_answers": 3,
                "majority_rate": 0.2,
                "type_majority_rate": 0.4,
            }
            for name, values in (("r0", r0), ("sft", sft))
            for turn, value in enumerate(values)
        ]
        path = tmp_path / f"accuracy{seed}.json"
        path.write_text(json.dumps(rows))
        return path

    def folder(name: str, seconds: dict[str, list[float]]) -> str:
        path = tmp_path / name / "benchmarks"
        path.mkdir(parents=True)
        for job, values in seconds.items():
            lines = ["s\th:m:s"] + [f"{v}\t0:00:00" for v in values]
            (path / f"{job}.tsv").write_text("\n".join(lines) + "\n")
        return str(path.parent)

    shared_sft = folder("sft-1", {"r0": [50.0], "sft": [30.0, 40.0]})  # rerun: 40 counts
    runs = {
        1: {
            "accuracy": str(accuracy(1, (60, 10), (40, 50))),
            "chosen": [],
            "folders": {"sft": shared_sft, "eval-r0": folder("e1", {"evaluate": [5.0]})},
        },
        2: {
            "accuracy": str(accuracy(2, (50, 20), (44, 46))),
            "chosen": [],
            "folders": {"sft": folder("sft-2", {"r0": [7.0]}), "run": str(tmp_path / "run2")},
        },
    }
    claim = {
        "kind": "correction",
        "benchmark": "heldout",
        "variant": "a",
        "against": "a",
        "checkpoint": "sft",
        "turn": "turn 1 − direct",
        "estimate": 6.0,
        "low": 2.0,
        "high": 10.0,
        "excludes_zero": True,
        "paired": True,
        "seeds": 2,
        "items": 20,
    }
    goal = {
        "variant": "a",
        "benchmark": "heldout",
        "goal": "sft's self-correction helps",
        "holds": True,
        "numbers": "+6.0 [+2.0, +10.0]",
    }
    paired = tmp_path / "paired.json"
    paired.write_text(
        json.dumps(
            {
                "baseline": "a",
                "bootstrap": {"resamples": 100, "seed": 0, "confidence": 0.95},
                "rows": [claim, {**claim, "variant": "b"}],
                "signature": [goal, {**goal, "variant": "b", "holds": False}],
            }
        )
    )
    out = tmp_path / "study"
    script = ROOT / "workflow_scripts" / "ablation_study.py"
    subprocess.run(
        [
            sys.executable,
            str(script),
            "--variant",
            "a",
            "--runs",
            json.dumps(runs),
            "--paired",
            str(paired),
            "--json",
            f"{out}.json",
            "--markdown",
            f"{out}.md",
            "--figure",
            f"{out}.png",
        ],
        check=True,
        cwd=ROOT,
    )
    study = json.loads(Path(f"{out}.json").read_text())
    assert study["seeds"] == [1, 2] and study["claims"] == [claim]
    assert study["signature"] == [goal]
    assert study["stage_seconds"] == {"1": {"sft": 90.0, "eval-r0": 5.0}, "2": {"sft": 7.0}}
    assert study["job_seconds"] == {"1": 95.0, "2": 7.0}
    sft = {(row["checkpoint"], row["turn"]): row for row in study["scores"]}[("sft", 1)]
    assert (sft["mean"], sft["seeds"]) == (48.0, [50.0, 46.0])
    html = tmp_path / "page.html"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "workflow_scripts" / "seed_study_page.py"),
            "--study",
            f"{out}.json",
            "--html",
            str(html),
            "--figure",
            str(tmp_path / "page.png"),
        ],
        check=True,
        cwd=ROOT,
    )
    page = html.read_text()
    for text in (
        "Does it work? a over seeds",
        "+6.0 [+2.0, +10.0]",
        "each claim with its paired",
        "Seconds of each stage",
    ):
        assert text in page, text
