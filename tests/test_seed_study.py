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
    for text in ("per seed (11, 12)", "200 held-out questions", "44.3 ± 0.3", "+1.7", "39.5", "95.0, 100.0"):
        assert text in page, text
    assert figure.read_bytes() == b"\x89PNG not really"


def test_the_committed_study_is_what_the_demo_report_reads():
    study = json.loads((ROOT / "benchmarks" / "results" / "demo_study.json").read_text())
    assert len(study["seeds"]) == 3
    table = score_table(study["scores"])
    assert table["checkpoint"].tolist() == ["base", "r0", "sft", "offline", "iter1", "iter2"]
