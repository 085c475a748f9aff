"""A seed study (one variant of an ablation over its seeds: what ``snakemake ablations`` writes
as ``<results_dir>/study/<variant>.json``) as tables: the score of every checkpoint by turn over
the seeds, the blind baselines, the signature's goals (over the seeds, and with the paired
intervals of ``sherlock.evaluation.paired``), Stage III's acceptance and the seconds of each
stage. The study's Markdown and the report's page over the seeds are both made from these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import mean, stdev
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


def seed_scores(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per checkpoint and turn over the seeds' tidy accuracy tables (eval/accuracy.json, each
    with its ``seed``): accuracy mean and spread (sample standard deviation; 0 for one seed),
    every seed's value, the mean number of distinct answers and the questions scored."""
    frame = pd.concat(frames, ignore_index=True)
    order = list(dict.fromkeys(frame["checkpoint"]))
    rows = []
    for (checkpoint, turn), group in frame.groupby(["checkpoint", "turn"], sort=False):
        values = [float(v) for v in group["percent"]]
        rows.append(
            {
                "checkpoint": checkpoint,
                "turn": int(turn),
                "mean": mean(values),
                "spread": stdev(values) if len(values) > 1 else 0.0,
                "seeds": values,
                "distinct_answers": mean(group["distinct_answers"]),
                "items": int(group["items"].iloc[0]),
            }
        )
    table = pd.DataFrame(rows)
    table["_order"] = table["checkpoint"].map({c: i for i, c in enumerate(order)})
    return table.sort_values(["_order", "turn"]).drop(columns="_order").reset_index(drop=True)


def interval_table(goals: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The signature's claims each with its paired interval: goal, met (its whole interval on
    the predicted side of zero), difference [interval] in points."""
    return pd.DataFrame(
        {
            "goal": [goal["goal"] for goal in goals],
            "met": [MET[goal["holds"]] for goal in goals],
            "difference [95 % interval]": [goal["numbers"] for goal in goals],
        }
    )


def stage_seconds_table(seconds: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Seconds of each stage's jobs (summed from their benchmark files), a column per seed."""
    frame = pd.DataFrame({f"seed {seed}": by_stage for seed, by_stage in seconds.items()})
    frame = frame.fillna(0.0).round(0).astype(int)
    frame.loc["total"] = frame.sum()
    return frame.rename_axis("stage").reset_index()
