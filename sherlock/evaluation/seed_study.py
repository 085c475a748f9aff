"""A seed study (what ``benchmarks/demo_study.py`` writes as JSON) as tables: the score of every
checkpoint by turn over the seeds, the blind baselines, the signature's goals and Stage III's
acceptance. The study's Markdown and the report's page over the seeds are both made from these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

MET = {True: "yes", False: "no", None: "–"}


def score_table(scores: Sequence[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """One row per checkpoint: "mean ± spread" of the direct answer and of each correction turn,
    the change from the direct answer to the last turn, and the mean number of distinct direct
    answers. ``scores``: rows of checkpoint, turn, mean, spread, distinct_answers."""
    frame = pd.DataFrame(scores)
    turns = sorted(int(turn) for turn in frame["turn"].unique())
    rows = []
    for checkpoint, group in frame.groupby("checkpoint", sort=False):
        by_turn = group.set_index("turn")
        row = {"checkpoint": checkpoint}
        for turn in turns:
            cell = by_turn.loc[turn]
            row["direct" if turn == 0 else f"turn {turn}"] = (
                f"{cell['mean']:.1f} ± {cell['spread']:.1f}"
            )
        change = by_turn.loc[turns[-1], "mean"] - by_turn.loc[0, "mean"]
        row["change"] = f"{change:+.1f}"
        row["distinct answers (direct)"] = f"{by_turn.loc[0, 'distinct_answers']:.1f}"
        rows.append(row)
    return pd.DataFrame(rows)


def baseline_table(baselines: Mapping[str, float]) -> pd.DataFrame:
    """What answering without the image scores (percent)."""
    return pd.DataFrame(
        {"blind baseline": list(baselines), "score": [f"{v:.1f}" for v in baselines.values()]}
    )


def goal_table(checks: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Each goal of the signature, whether it is met (yes, no, – for not measurable), and the
    numbers that decide it."""
    return pd.DataFrame(
        {
            "goal": [check["goal"] for check in checks],
            "met": [MET[check["holds"]] for check in checks],
            "numbers": [check["numbers"] for check in checks],
        }
    )


def acceptance_table(acceptance: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Stage III's acceptance rate per online iteration: mean over the seeds, then each seed."""
    return pd.DataFrame(
        {
            "iteration": [f"iter{k}" for k in acceptance],
            "mean (%)": [f"{100 * sum(v) / len(v):.1f}" for v in acceptance.values()],
            "each seed (%)": [", ".join(f"{100 * x:.1f}" for x in v) for v in acceptance.values()],
        }
    )


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown table, every cell as it is."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)
