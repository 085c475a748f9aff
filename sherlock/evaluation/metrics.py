"""Each benchmark's own metric, per turn, from the per-question verdicts of its responses.

``accuracy``: percent right (multiple choice, exact match; MMStar, AI2D). ``mmmu``: accuracy over
the rows of the validation split (VLMEvalKit's MMMU_DEV_VAL also holds the dev split, scored
apart; the paper reports val), all rows when the file has no ``split`` column. ``mmbench``:
VLMEvalKit's circular accuracy (a question counts when it and all its option-shifted copies,
indices ``i + k·10⁶``, are right; equal to accuracy without copies). ``yes_no``: percent right.
``mme`` and ``hallusionbench``: ``sherlock.evaluation.yes_no``. ``judge``: percent right after
the judge model extracted each answer (``sherlock.evaluation.open_answers``).

Every metric gives ``score`` (in the benchmark's own unit: MME's is 0–2800 on all 14 subtasks)
and ``percent`` (0–100, what the average over benchmarks uses: MME's score over its maximum).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sherlock.evaluation.scoring import CORRECT
from sherlock.evaluation.yes_no import (
    hallusionbench_scores,
    mme_scores,
    percent_all_right,
    percent_right,
)

METRICS = ("accuracy", "mmmu", "mmbench", "yes_no", "mme", "hallusionbench", "judge")
MMMU_SPLIT = "validation"
CIRCULAR_STRIDE = 1_000_000
# What each metric's headline number is, for the table's caption.
METRIC_UNITS = {
    "accuracy": "accuracy %",
    "mmmu": "accuracy % on the validation split",
    "mmbench": "circular accuracy %",
    "yes_no": "accuracy %",
    "mme": "MME score (acc + acc+ per subtask, summed)",
    "hallusionbench": "mean of aAcc, fAcc, qAcc %",
    "judge": "accuracy % (answers extracted by a local judge model, not GPT)",
}


def metric_for(path: str, format: str, metric: str | None) -> str:
    """The configured metric, or the one VLMEvalKit uses for the dataset the file is named
    after (MME, HallusionBench, MMBench*, MathVista*, MMVet*; else accuracy)."""
    if metric:
        return metric
    if format != "vlmevalkit":
        return "accuracy"
    stem = Path(path).stem
    if stem == "MME":
        return "mme"
    if stem.startswith("HallusionBench"):
        return "hallusionbench"
    if stem.startswith("MMBench"):
        return "mmbench"
    if stem.startswith("MMMU"):
        return "mmmu"
    if stem.startswith(("MathVista", "MMVet")):
        return "judge"
    return "accuracy"


def _circular_group(row: dict[str, Any]) -> str:
    index = str(row.get("meta", {}).get("index", row["id"]))
    return str(int(index) % CIRCULAR_STRIDE) if index.isdigit() else index


def turn_scores(rows: Sequence[dict[str, Any]], metric: str, turn: int) -> dict[str, Any]:
    """The metric of one turn: ``score``, ``percent`` and the metric's parts."""
    right = [row["statuses"][turn] == CORRECT for row in rows]
    if metric == "mme":
        return mme_scores(rows, right)
    if metric == "hallusionbench":
        return hallusionbench_scores(rows, right)
    if metric == "mmbench":
        value = percent_all_right(rows, _circular_group, right)
        return {"score": value, "percent": value}
    if metric == "mmmu":
        splits = [row.get("meta", {}).get("columns", {}).get("split") for row in rows]
        if MMMU_SPLIT in splits:
            right = [ok for ok, split in zip(right, splits, strict=True) if split == MMMU_SPLIT]
        value = percent_right(right)
        return {"score": value, "percent": value, "scored": len(right)}
    if metric in ("accuracy", "yes_no", "judge"):
        value = percent_right(right)
        return {"score": value, "percent": value}
    raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")


def add_scores(summary: dict[str, Any], rows: Sequence[dict[str, Any]], metric: str) -> None:
    """Put the metric of every turn into a summary (``summarise``'s form), rounded."""
    summary["metric"] = metric
    for entry in summary["turns"]:
        scores = turn_scores(rows, metric, entry["turn"])
        entry["score"] = round(scores["score"], 4)
        entry["percent"] = round(scores["percent"], 4)
        entry["parts"] = {
            key: (
                {k: round(v, 4) for k, v in value.items()}
                if isinstance(value, dict)
                else round(value, 4)
            )
            for key, value in scores.items()
            if key not in ("score", "percent")
        }
