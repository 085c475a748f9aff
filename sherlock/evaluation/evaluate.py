"""Evaluating a checkpoint: direct answers and each self-correction turn, scored (method §9).

``evaluate`` runs the rounds of ``sherlock.generation.self_correct`` on a benchmark and scores
every turn; ``accuracy_rows`` turns a run's summary into tidy rows (one per turn), and
``paper_table`` lays the rows of many runs out like the paper's table: one row per checkpoint,
direct and self-corrected score per benchmark (each in its own metric,
``sherlock.evaluation.metrics``) and their average, with the paper's published averages beside
them when given.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sherlock.data.response import format_problem, normalise_answer
from sherlock.evaluation.answers import AUTO
from sherlock.evaluation.benchmark_files import BenchmarkItem
from sherlock.evaluation.scoring import CORRECT, STATUSES, score_response
from sherlock.generation import GenerationBackend, SamplingParams
from sherlock.generation.self_correct import Question, self_correct

TABLE_COLUMNS = (
    "checkpoint",
    "benchmark",
    "turn",
    "answer_from",  # what the answer was read from: conclusion, response or auto
    "items",
    "correct",
    "accuracy",
    *(status for status in STATUSES if status != CORRECT),
    "no_format",  # share of responses not in the four-stage format (read whole under auto)
    "gained",
    "lost",
    "distinct_answers",  # different predictions among the items: a collapsed model gives few
    "majority_rate",  # accuracy of always giving the benchmark's most common answer
    "type_majority_rate",  # ... the most common answer of each question type (when known)
    "metric",
    "score",  # the benchmark's own metric (MME: 0-2800)
    "percent",  # the same on 0-100, what the average uses
    "parts",  # the metric's parts (HallusionBench's aAcc, fAcc, qAcc; MME's subtasks), JSON
    "malformed_rows",  # rows of the benchmark file that could not be evaluated
    "vlmevalkit_differences",  # rows whose file layout VLMEvalKit reads differently, JSON
)


def score_turns(
    item: BenchmarkItem,
    turns: Sequence[str],
    answer_from: str = AUTO,
    open_as_choice: bool = False,
) -> dict[str, Any]:
    """One evaluated item: its turns with the prediction and status of each (the answer read
    as ``answer_from`` says; ``open_as_choice``: MMMU's open questions, ``scoring``)."""
    scores = [score_response(item, response, answer_from, open_as_choice) for response in turns]
    return {
        "id": item.id,
        "image": item.image,
        "question": item.question,
        "choices": list(item.choices),
        "answer": item.answer,
        "turns": list(turns),
        "predictions": [score.prediction for score in scores],
        "statuses": [score.status for score in scores],
        "kind": item.answer_kind,
        "meta": item.meta,
    }


def majority_rates(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """What answering without the image scores: always the most common answer (``majority``),
    and the most common answer of each question type (``type_majority``: None when the items do
    not carry ``meta.question_type``)."""
    if not rows:
        return {"majority_rate": 0.0, "type_majority_rate": None}
    answers = Counter(row["answer"] for row in rows)
    by_type: dict[str, Counter[str]] = {}
    for row in rows:
        question_type = (row.get("meta") or {}).get("question_type")
        if question_type is None:
            by_type = {}
            break
        by_type.setdefault(question_type, Counter())[row["answer"]] += 1
    typed = sum(c.most_common(1)[0][1] for c in by_type.values()) if by_type else None
    return {
        "majority_rate": round(answers.most_common(1)[0][1] / len(rows), 6),
        "type_majority_rate": round(typed / len(rows), 6) if typed is not None else None,
    }


def share_without_format(rows: Sequence[dict[str, Any]], turn: int) -> float:
    """The share of a turn's responses that are not in the four-stage format."""
    if not rows:
        return 0.0
    broken = sum(format_problem(row["turns"][turn]) is not None for row in rows)
    return round(broken / len(rows), 6)


def summarise(
    rows: Sequence[dict[str, Any]], rounds: int, answer_from: str = AUTO
) -> dict[str, Any]:
    """Accuracy and status counts per turn; ``no_format``: the share of responses not in the
    four-stage format; ``gained``/``lost``: items a turn made right/wrong;
    ``distinct_answers``: different predictions (a model that collapses to one answer has 1)."""
    per_turn = []
    for turn in range(rounds + 1):
        statuses = Counter(row["statuses"][turn] for row in rows)
        entry: dict[str, Any] = {
            "turn": turn,
            "items": len(rows),
            "correct": statuses[CORRECT],
            "accuracy": round(statuses[CORRECT] / len(rows), 6) if rows else 0.0,
            **{status: statuses[status] for status in STATUSES if status != CORRECT},
            "no_format": share_without_format(rows, turn),
            "gained": 0,
            "lost": 0,
            "distinct_answers": len(
                {normalise_answer(p) for row in rows if (p := row["predictions"][turn]) is not None}
            ),
        }
        if turn > 0:
            before = [row["statuses"][turn - 1] == CORRECT for row in rows]
            after = [row["statuses"][turn] == CORRECT for row in rows]
            entry["gained"] = sum(a and not b for a, b in zip(after, before, strict=True))
            entry["lost"] = sum(b and not a for a, b in zip(after, before, strict=True))
        per_turn.append(entry)
    return {
        "items": len(rows),
        "rounds": rounds,
        "answer_from": answer_from,
        "turns": per_turn,
        **majority_rates(rows),
    }


def evaluate(
    backend: GenerationBackend,
    items: Sequence[BenchmarkItem],
    refine_template: str,
    sampling: SamplingParams,
    rounds: int,
    answer_from: str = AUTO,
    open_as_choice: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every item answered directly and corrected ``rounds`` times, scored turn by turn."""
    questions = [Question(item.id, item.image, item.prompt()) for item in items]
    histories = self_correct(backend, questions, refine_template, sampling, rounds)
    rows = [
        score_turns(item, turns, answer_from, open_as_choice)
        for item, turns in zip(items, histories, strict=True)
    ]
    return rows, summarise(rows, rounds, answer_from)


def accuracy_rows(summary: dict[str, Any], checkpoint: str, benchmark: str) -> list[dict]:
    """Tidy rows (one per turn) of one checkpoint on one benchmark; a summary without a metric
    is scored by accuracy."""
    rows = []
    for entry in summary["turns"]:
        percent = entry.get("percent", entry["accuracy"] * 100)
        rows.append(
            {
                "checkpoint": checkpoint,
                "benchmark": benchmark,
                "answer_from": summary.get("answer_from", "conclusion"),
                **entry,
                "distinct_answers": entry.get("distinct_answers"),
                "majority_rate": summary.get("majority_rate"),
                "type_majority_rate": summary.get("type_majority_rate"),
                "metric": summary.get("metric", "accuracy"),
                "score": entry.get("score", percent),
                "percent": percent,
                "parts": json.dumps(entry.get("parts", {}), sort_keys=True),
                "malformed_rows": summary.get("malformed_rows", 0),
                "vlmevalkit_differences": json.dumps(
                    summary.get("vlmevalkit_differences", {}), sort_keys=True
                ),
            }
        )
    return rows


def accuracy_frame(rows: Sequence[dict[str, Any]], checkpoints: Sequence[str]) -> pd.DataFrame:
    """The tidy table, checkpoints in pipeline order, then benchmark, then turn."""
    frame = pd.DataFrame(list(rows), columns=list(TABLE_COLUMNS))
    order = {name: index for index, name in enumerate(checkpoints)}
    unknown = set(frame["checkpoint"]) - set(order)
    if unknown:
        raise ValueError(f"checkpoints not in the pipeline order: {sorted(unknown)}")
    frame["_order"] = frame["checkpoint"].map(order)
    frame = frame.sort_values(["_order", "benchmark", "turn"]).drop(columns="_order")
    return frame.reset_index(drop=True)


def paper_table(
    frame: pd.DataFrame, published: dict[str, tuple[float, float | None]] | None = None
) -> pd.DataFrame:
    """A row per checkpoint, laid out like the paper's table: per benchmark its own score
    (accuracy in percent, MME's summed score, …) for the direct answer (turn 0) and the
    self-corrected one (last turn); then the average over benchmarks (each on 0-100) at every
    turn and the change self-correction made to it; the share of responses not in the
    four-stage format (percent, mean over benchmarks), direct and last turn; then, with
    ``published`` (checkpoint → direct, self-corrected), the paper's averages beside ours."""
    last = int(frame["turn"].max())
    blocks = {}
    for benchmark, rows in frame.groupby("benchmark", sort=False):
        by_turn = rows.pivot_table(index="checkpoint", columns="turn", values="score", sort=False)
        blocks[benchmark] = pd.DataFrame(
            {"direct": by_turn[0], "self-corrected": by_turn[last]}, index=by_turn.index
        )
    average = frame.groupby(["checkpoint", "turn"], sort=False)["percent"].mean().unstack()
    average_block = average.rename(columns=lambda t: "direct" if t == 0 else f"turn {t}")
    average_block["change"] = average[last] - average[0]
    blocks["average"] = average_block
    if frame["no_format"].notna().any():
        unformatted = 100 * frame.groupby(["checkpoint", "turn"], sort=False)["no_format"].mean()
        unformatted = unformatted.unstack()
        blocks["without the format (%)"] = pd.DataFrame(
            {"direct": unformatted[0], "self-corrected": unformatted[last]},
            index=unformatted.index,
        )
    if published:
        blocks["paper (average)"] = pd.DataFrame(
            {
                "direct": [published.get(c, (None, None))[0] for c in average.index],
                "self-corrected": [published.get(c, (None, None))[1] for c in average.index],
            },
            index=average.index,
            dtype=float,
        )
    table = pd.concat(blocks, axis=1)
    table.columns.names = ["checkpoint", None]  # shown in the header's corner
    table.index.name = None
    return table.round(1)
