"""The yes/no benchmarks' own scores, as VLMEvalKit computes them from per-question verdicts.

MME: per subtask (``category``), accuracy over questions plus *accuracy+* over images (an image
counts when both its questions are answered right), each in percent, so a subtask scores 0–200;
the benchmark's score is the sum over subtasks (perception: 10 subtasks, reasoning: 4). The
questions of one image share its ``image_path`` (or, without that column, its picture).

HallusionBench: *aAcc* over all questions; *fAcc* over figures (all questions about one figure
right) and *qAcc* over questions (one question right on every figure it is asked about); a
question's set, figure and question ids are its ``set_id``/``figure_id``/``question_id``
4th–6th ``_``-separated parts of its index (VLMEvalKit reads only these) or, for an index without
them, its ``set_id``/``figure_id``/``question_id`` columns.

POPE: F1 of "Yes" (the headline), with accuracy, precision and recall, overall and per
``category``; a row whose category lists several (``adversarial,popular``) counts once in each
and, as VLMEvalKit explodes the rows before everything, that often overall. An answer read as
neither yes nor no predicts "No" for F1, precision and recall (it is never a true "Yes") and is
wrong for accuracy.

AMBER: accuracy per category (VLMEvalKit's mapping: the three attribute kinds are "Attribute",
``discriminative-hallucination`` "Existence", both relation kinds "Relation"), and their mean
(the headline). VSR: accuracy (the headline), precision, recall and F1 of "Yes".
Any other yes/no file: accuracy, and per ``category`` and ``l2-category``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

MME_PERCEPTION = (
    "OCR", "artwork", "celebrity", "color", "count", "existence", "landmark", "position",
    "posters", "scene",
)  # fmt: skip
MME_REASONING = (
    "code_reasoning", "commonsense_reasoning", "numerical_calculation", "text_translation",
)  # fmt: skip
MME_SUBTASK_MAX = 200.0
HALLUSION_IDS = ("set_id", "figure_id", "question_id")

Row = dict[str, Any]


def _columns(row: Row) -> dict[str, str]:
    return row.get("meta", {}).get("columns", {})


def percent_right(values: Sequence[bool]) -> float:
    return 100.0 * sum(values) / len(values) if values else 0.0


def percent_all_right(
    rows: Sequence[Row], key: Callable[[Row], Any], right: Sequence[bool]
) -> float:
    """Percent of groups whose every member is right."""
    groups: dict[Any, list[bool]] = defaultdict(list)
    for row, ok in zip(rows, right, strict=True):
        groups[key(row)].append(ok)
    return percent_right([all(members) for members in groups.values()])


def mme_pair_key(row: Row) -> str:
    """The image the question is about: its image_path, else its (shared) picture file."""
    return _columns(row).get("image_path") or row["image"]


def mme_scores(rows: Sequence[Row], right: Sequence[bool]) -> dict[str, Any]:
    """MME's score: subtask scores (acc + acc+), perception, reasoning and their sum."""
    by_task: dict[str, list[int]] = defaultdict(list)
    for position, row in enumerate(rows):
        by_task[_columns(row).get("category", "")].append(position)
    subtasks = {}
    for task, positions in by_task.items():
        members = [rows[p] for p in positions]
        ok = [right[p] for p in positions]
        subtasks[task] = percent_right(ok) + percent_all_right(members, mme_pair_key, ok)
    perception = sum(v for k, v in subtasks.items() if k in MME_PERCEPTION)
    reasoning = sum(v for k, v in subtasks.items() if k in MME_REASONING)
    total = sum(subtasks.values())
    return {
        "score": total,
        "percent": 100.0 * total / (MME_SUBTASK_MAX * len(subtasks)) if subtasks else 0.0,
        "perception": perception,
        "reasoning": reasoning,
        "subtasks": subtasks,
    }


def hallusion_ids(index: str, columns: dict[str, str]) -> tuple[str, str, str] | None:
    """(set, figure, question) ids of a HallusionBench row: from its index, as VLMEvalKit reads
    them; from its id columns when the index has no such parts; None when it has neither."""
    parts = index.split("_")
    if len(parts) >= 6:
        return (parts[3], parts[4], parts[5])
    if all(columns.get(name, "") != "" for name in HALLUSION_IDS):
        return tuple(columns[name] for name in HALLUSION_IDS)  # type: ignore[return-value]
    return None


def hallusionbench_scores(rows: Sequence[Row], right: Sequence[bool]) -> dict[str, Any]:
    """aAcc, fAcc, qAcc (percent) and their mean, the number the average uses."""

    def ids(row: Row) -> tuple[str, str, str]:
        found = hallusion_ids(row["meta"]["index"], _columns(row))
        if found is None:
            raise ValueError(f"HallusionBench row {row['id']!r}: no set, figure and question ids")
        return found

    def category(row: Row) -> str:
        return _columns(row).get("l2-category", "")

    a_acc = percent_right(right)
    f_acc = percent_all_right(rows, lambda row: (category(row), ids(row)[0], ids(row)[1]), right)
    q_acc = percent_all_right(rows, lambda row: (category(row), ids(row)[0], ids(row)[2]), right)
    mean = (a_acc + f_acc + q_acc) / 3
    return {"score": mean, "percent": mean, "aAcc": a_acc, "fAcc": f_acc, "qAcc": q_acc}


def _percent(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else 0.0


def yes_scores(answers: Sequence[str], said: Sequence[str | None]) -> dict[str, float]:
    """Precision, recall and F1 of "Yes" (percent; 0 where undefined, as VLMEvalKit)."""
    pairs = list(zip(answers, said, strict=True))
    hit = sum(a == "Yes" and s == "Yes" for a, s in pairs)
    false_yes = sum(a != "Yes" and s == "Yes" for a, s in pairs)
    missed = sum(a == "Yes" and s != "Yes" for a, s in pairs)
    precision = _percent(hit, hit + false_yes)
    recall = _percent(hit, hit + missed)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def category_names(row: Row) -> list[str]:
    """POPE's categories of a row: its ``category`` cell split at commas (none: [""])."""
    return _columns(row).get("category", "").split(",")


def pope_scores(
    rows: Sequence[Row], right: Sequence[bool], said: Sequence[str | None]
) -> dict[str, Any]:
    """POPE: F1 of "Yes" (the headline) with accuracy, precision and recall, overall and per
    category, over the rows exploded by category as VLMEvalKit does."""
    exploded = [
        (category, row["answer"], ok, answer)
        for row, ok, answer in zip(rows, right, said, strict=True)
        for category in category_names(row)
    ]

    def measure(members: list[tuple[str, str, bool, str | None]]) -> dict[str, float]:
        scores = yes_scores([m[1] for m in members], [m[3] for m in members])
        return {**scores, "acc": percent_right([m[2] for m in members])}

    overall = measure(exploded)
    categories = sorted({m[0] for m in exploded} - {""})
    return {
        "score": overall["f1"],
        "percent": overall["f1"],
        "acc": overall["acc"],
        "precision": overall["precision"],
        "recall": overall["recall"],
        "categories": {c: measure([m for m in exploded if m[0] == c]) for c in categories},
    }


AMBER_CATEGORIES = {
    "discriminative-attribute-state": "Attribute",
    "discriminative-attribute-number": "Attribute",
    "discriminative-attribute-action": "Attribute",
    "discriminative-hallucination": "Existence",
    "discriminative-relation": "Relation",
    "relation": "Relation",
}


def amber_scores(rows: Sequence[Row], right: Sequence[bool]) -> dict[str, Any]:
    """AMBER: accuracy per (mapped) category and their mean, the headline."""
    by_category: dict[str, list[bool]] = defaultdict(list)
    for row, ok in zip(rows, right, strict=True):
        category = _columns(row).get("category", "")
        by_category[AMBER_CATEGORIES.get(category, category)].append(ok)
    categories = {name: percent_right(values) for name, values in sorted(by_category.items())}
    mean = sum(categories.values()) / len(categories) if categories else 0.0
    return {"score": mean, "percent": mean, "categories": categories}


def vsr_scores(
    rows: Sequence[Row], right: Sequence[bool], said: Sequence[str | None]
) -> dict[str, Any]:
    """VSR: accuracy (the headline), precision, recall and F1 of "Yes" (all percent)."""
    acc = percent_right(right)
    return {"score": acc, "percent": acc, **yes_scores([r["answer"] for r in rows], said)}


def by_category_scores(rows: Sequence[Row], right: Sequence[bool]) -> dict[str, Any]:
    """Accuracy, and per ``category`` and ``l2-category`` when the rows have them."""
    acc = percent_right(right)
    out: dict[str, Any] = {"score": acc, "percent": acc}
    for column in ("category", "l2-category"):
        groups: dict[str, list[bool]] = defaultdict(list)
        for row, ok in zip(rows, right, strict=True):
            value = _columns(row).get(column, "")
            if value:
                groups[value].append(ok)
        if groups:
            out[column] = {name: percent_right(v) for name, v in sorted(groups.items())}
    return out
