"""Each benchmark's own metric, per turn, from the per-question verdicts of its responses, as
VLMEvalKit computes it for the file's name.

``accuracy``: percent right, with the ``category``/``l2-category`` splits (multiple choice and
exact match; MMStar, AI2D and any other file). ``mmmu``: accuracy over the rows of the
validation split (VLMEvalKit's MMMU_DEV_VAL also holds the dev split, scored apart; the paper
reports val), all rows when the file has no ``split`` column; its questions without options are
read as VLMEvalKit reads them (``answers.open_choice``). ``mmbench``: VLMEvalKit's circular
accuracy (MMBench, CCBench, MMCR and every ``*circular*`` file): a question counts when it and
all its option-shifted copies (indices ``i + k·10⁶``, or its ``g_index``) are right; a copy
whose original row is not evaluated is not scored, as in VLMEvalKit. ``mmvp``: the share of
question pairs (rows 2i, 2i+1 in index order) with both right. ``yes_no``: percent right with the
category splits. ``mme``, ``hallusionbench``, ``pope``, ``amber`` and ``vsr``:
``sherlock.evaluation.yes_no``. ``judge``: percent right after the judge model extracted each
answer (``sherlock.evaluation.open_answers``).

Every metric gives ``score`` (in the benchmark's own unit: MME's is 0–2800 on all 14 subtasks)
and ``percent`` (0–100, what the average over benchmarks uses: MME's score over its maximum).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sherlock.evaluation.scoring import CORRECT
from sherlock.evaluation.yes_no import (
    amber_scores,
    by_category_scores,
    hallusionbench_scores,
    mme_scores,
    percent_right,
    pope_scores,
    vsr_scores,
)

METRICS = (
    "accuracy", "mmmu", "mmbench", "mmvp", "yes_no", "mme", "hallusionbench", "pope", "amber",
    "vsr", "judge",
)  # fmt: skip
YES_NO_METRICS = ("yes_no", "mme", "hallusionbench", "pope", "amber", "vsr")
MMMU_SPLIT = "validation"
CIRCULAR_STRIDE = 1_000_000
CIRCULAR_NAMES = ("mmbench", "ccbench", "circular", "mmcr")  # VLMEvalKit: in the name, any case
# What each metric's headline number is, for the table's caption.
METRIC_UNITS = {
    "accuracy": "accuracy %",
    "mmmu": "accuracy % on the validation split",
    "mmbench": "circular accuracy %",
    "mmvp": "pair accuracy % (both questions of a pair right)",
    "yes_no": "accuracy %",
    "mme": "MME score (acc + acc+ per subtask, summed)",
    "hallusionbench": "mean of aAcc, fAcc, qAcc %",
    "pope": "F1 % of 'Yes' (accuracy, precision, recall beside it)",
    "amber": "mean of the category accuracies %",
    "vsr": "accuracy %",
    "judge": "accuracy % (answers extracted by a local judge model, not GPT)",
}


def metric_for(path: str, format: str, metric: str | None) -> str:
    """The configured metric, or the one VLMEvalKit uses for the dataset the file is named
    after (MME, HallusionBench, POPE, AMBER, VSR-zeroshot, circular files, MMVP, MMMU*,
    MathVista*, MMVet*; else accuracy)."""
    if metric:
        return metric
    if format != "vlmevalkit":
        return "accuracy"
    stem = Path(path).stem
    if stem == "MME":
        return "mme"
    if stem.startswith("HallusionBench"):
        return "hallusionbench"
    for name, chosen in (("POPE", "pope"), ("AMBER", "amber"), ("VSR-zeroshot", "vsr")):
        if name in stem:
            return chosen
    if any(name in stem.lower() for name in CIRCULAR_NAMES):
        return "mmbench"
    if stem == "MMVP":
        return "mmvp"
    if stem.startswith("MMMU"):
        return "mmmu"
    if stem.startswith(("MathVista", "MMVet")):
        return "judge"
    return "accuracy"


def _index(row: dict[str, Any]) -> str:
    return str(row.get("meta", {}).get("index", row["id"]))


def circular_group(row: dict[str, Any]) -> str:
    """The original question a (possibly option-shifted) row belongs to."""
    given = row.get("meta", {}).get("columns", {}).get("g_index", "")
    if given:
        return given
    index = _index(row)
    return str(int(index) % CIRCULAR_STRIDE) if index.isdigit() else index


def circular_scores(rows: Sequence[dict[str, Any]], right: Sequence[bool]) -> dict[str, Any]:
    """Circular accuracy over the questions whose original row is evaluated."""
    originals = {_index(row) for row in rows if circular_group(row) == _index(row)}
    groups: dict[str, list[bool]] = {group: [] for group in sorted(originals)}
    for row, ok in zip(rows, right, strict=True):
        if circular_group(row) in groups:
            groups[circular_group(row)].append(ok)
    value = percent_right([all(members) for members in groups.values()])
    return {"score": value, "percent": value, "questions": len(groups)}


def _index_order(row: dict[str, Any]) -> tuple[int, Any]:
    index = _index(row)
    return (0, int(index)) if index.lstrip("-").isdigit() else (1, index)


def mmvp_scores(rows: Sequence[dict[str, Any]], right: Sequence[bool]) -> dict[str, Any]:
    """MMVP: pairs of consecutive rows in index order, both right (an odd last row: unpaired)."""
    paired = sorted(zip(rows, right, strict=True), key=lambda pair: _index_order(pair[0]))
    ordered = [ok for _, ok in paired]
    pairs = [ordered[i] and ordered[i + 1] for i in range(0, len(ordered) - 1, 2)]
    value = percent_right(pairs)
    return {"score": value, "percent": value, "average": percent_right(ordered)}


def turn_scores(rows: Sequence[dict[str, Any]], metric: str, turn: int) -> dict[str, Any]:
    """The metric of one turn: ``score``, ``percent`` and the metric's parts."""
    right = [row["statuses"][turn] == CORRECT for row in rows]
    said = [row["predictions"][turn] for row in rows]
    if metric == "mme":
        return mme_scores(rows, right)
    if metric == "hallusionbench":
        return hallusionbench_scores(rows, right)
    if metric == "pope":
        return pope_scores(rows, right, said)
    if metric == "amber":
        return amber_scores(rows, right)
    if metric == "vsr":
        return vsr_scores(rows, right, said)
    if metric == "mmbench":
        return circular_scores(rows, right)
    if metric == "mmvp":
        return mmvp_scores(rows, right)
    if metric == "mmmu":
        splits = [row.get("meta", {}).get("columns", {}).get("split") for row in rows]
        if MMMU_SPLIT in splits:
            right = [ok for ok, split in zip(right, splits, strict=True) if split == MMMU_SPLIT]
        value = percent_right(right)
        return {"score": value, "percent": value, "scored": len(right)}
    if metric in ("accuracy", "yes_no"):
        return by_category_scores(rows, right)
    if metric == "judge":
        value = percent_right(right)
        return {"score": value, "percent": value}
    raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _rounded(inner) for key, inner in value.items()}
    return round(value, 4)


def add_scores(summary: dict[str, Any], rows: Sequence[dict[str, Any]], metric: str) -> None:
    """Put the metric of every turn into a summary (``summarise``'s form), rounded."""
    summary["metric"] = metric
    for entry in summary["turns"]:
        scores = turn_scores(rows, metric, entry["turn"])
        entry["score"] = round(scores["score"], 4)
        entry["percent"] = round(scores["percent"], 4)
        entry["parts"] = {
            key: _rounded(value) for key, value in scores.items() if key not in ("score", "percent")
        }
