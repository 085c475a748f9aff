"""One run's evidence of the method's effect: scores by checkpoint beside the blind baselines.

``effect_table`` lays out, per checkpoint, the score of the direct answer and of every correction
turn (the mean over benchmarks, each on 0-100), the change self-correction made, and how many
distinct answers the checkpoint gave (a model that collapses to one answer gives 1).
``run_scores`` turns the same rows into ``signature.Score`` values for the signature checks.
"""

from __future__ import annotations

import pandas as pd

from sherlock.evaluation.signature import Score


def effect_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Checkpoint rows (pipeline order of ``frame``): direct, turn 1..T, change, and the
    distinct answers of the direct answer and of the last turn (summed over benchmarks)."""
    order = list(dict.fromkeys(frame["checkpoint"]))
    last = int(frame["turn"].max())
    scores = _mean_by_turn(frame).reindex(order)
    table = scores.rename(columns=lambda t: "direct" if t == 0 else f"turn {t}")
    table["change"] = scores[last] - scores[0]
    distinct = frame.groupby(["checkpoint", "turn"])["distinct_answers"].sum().unstack()
    table["distinct answers (direct)"] = distinct[0].reindex(order)
    table["distinct answers (last turn)"] = distinct[last].reindex(order)
    table.index.name = table.columns.name = None
    return table


def run_scores(frame: pd.DataFrame) -> dict[str, Score]:
    """Checkpoint → its score (percent, mean over benchmarks) directly and at the last turn."""
    last = int(frame["turn"].max())
    scores = _mean_by_turn(frame)
    return {name: Score(float(row[0]), float(row[last])) for name, row in scores.iterrows()}


def _mean_by_turn(frame: pd.DataFrame) -> pd.DataFrame:
    """Checkpoint rows, turn columns: the score in percent, averaged over benchmarks."""
    return frame.groupby(["checkpoint", "turn"])["percent"].mean().unstack()


def baselines(frame: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark: the blind baselines (percent): always the most common answer, and the most
    common answer of each question type (when the benchmark names the types)."""
    first = frame.drop_duplicates("benchmark").set_index("benchmark")
    table = pd.DataFrame(
        {
            "benchmark": first.index,
            "majority answer": first["majority_rate"].astype(float) * 100,
            "majority answer per question type": first["type_majority_rate"].astype(float) * 100,
        }
    )
    return table.reset_index(drop=True)


def single_majority_rate(frame: pd.DataFrame) -> float | None:
    """The majority-answer rate (percent) when the run scored one benchmark that has one."""
    if frame["benchmark"].nunique() != 1 or frame["majority_rate"].isna().all():
        return None
    return float(frame["majority_rate"].dropna().iloc[0]) * 100
