"""The yes/no benchmarks' own scores, as VLMEvalKit computes them from per-question verdicts.

MME: per subtask (``category``), accuracy over questions plus *accuracy+* over images (an image
counts when both its questions are answered right), each in percent, so a subtask scores 0–200;
the benchmark's score is the sum over subtasks (perception: 10 subtasks, reasoning: 4). The
questions of one image share its ``image_path`` (or, without that column, its picture).

HallusionBench: *aAcc* over all questions; *fAcc* over figures (all questions about one figure
right) and *qAcc* over questions (one question right on every figure it is asked about); a
question's set, figure and question ids are its ``set_id``/``figure_id``/``question_id``
columns or, as in VLMEvalKit's file, the 4th–6th ``_``-separated parts of its index.
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
    """(set, figure, question) ids of a HallusionBench row, None when it has none."""
    if all(columns.get(name, "") != "" for name in HALLUSION_IDS):
        return tuple(columns[name] for name in HALLUSION_IDS)  # type: ignore[return-value]
    parts = index.split("_")
    return (parts[3], parts[4], parts[5]) if len(parts) >= 6 else None


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
