"""The report's figures (matplotlib, written as PNG): accuracy by correction turn, training
curves, perturbation statistics, online acceptance rates, and an ablation's scores over seeds
and paired differences."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: jobs run on nodes without a screen

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sherlock.runtime.atomic import atomic_output  # noqa: E402

# Panels of a training figure: (title, keys of the log history plotted in it).
LOSS_KEYS = ("loss", "loss/dpo", "loss/sc_rejected", "loss/sc_chosen")
MARGIN_KEYS = ("rewards/margins", "rewards_sc_rejected/margins", "rewards_sc_chosen/margins")
ACCURACY_KEYS = (
    "rewards/accuracies",
    "rewards_sc_rejected/accuracies",
    "rewards_sc_chosen/accuracies",
)
TRAINING_PANELS = (
    ("loss", LOSS_KEYS),
    ("reward margins", MARGIN_KEYS),
    ("reward accuracies", ACCURACY_KEYS),
)


def _save(figure: plt.Figure, path: str | os.PathLike[str]) -> None:
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)


def accuracy_by_turn(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """One panel per benchmark (and their average): the score at each turn on 0-100 (MME's over
    its maximum), a line per checkpoint."""
    benchmarks = list(dict.fromkeys(frame["benchmark"]))
    panels = benchmarks + (["average"] if len(benchmarks) > 1 else [])
    figure, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels) + 1.4, 3.6), squeeze=False
    )
    turns = sorted(frame["turn"].unique())
    for axis, panel in zip(axes[0], panels, strict=True):
        rows = frame if panel == "average" else frame[frame["benchmark"] == panel]
        means = rows.groupby(["checkpoint", "turn"], sort=False)["percent"].mean()
        for checkpoint in dict.fromkeys(rows["checkpoint"]):
            axis.plot(turns, means[checkpoint].reindex(turns), marker="o", label=checkpoint)
        axis.set_title(panel)
        axis.set_xticks(turns, ["direct" if t == 0 else f"turn {t}" for t in turns])
        axis.set_ylabel("score (%)")
        axis.grid(alpha=0.3)
    axes[0][-1].legend(
        title="checkpoint", fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0)
    )
    _save(figure, path)


def training_curves(stage: str, log_history: Sequence[Mapping[str, Any]], path: str) -> None:
    """Loss (and, for preference stages, reward margins and accuracies) against the step."""
    logged = [entry for entry in log_history if "step" in entry]
    panels = [
        (title, [key for key in keys if any(key in entry for entry in logged)])
        for title, keys in TRAINING_PANELS
    ]
    panels = [(title, keys) for title, keys in panels if keys]
    if not panels:
        panels = [("loss", [])]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for axis, (title, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            points = [(e["step"], e[key]) for e in logged if key in e]
            axis.plot(*zip(*points, strict=True), marker=".", label=key)
        if not keys:
            axis.text(0.5, 0.5, "no logged steps", ha="center", va="center")
        axis.set_title(f"{stage}: {title}")
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if len(keys) > 1:
            axis.legend(fontsize="x-small")
    _save(figure, path)


def perturbation_histograms(pairs: Mapping[str, Sequence[Mapping[str, Any]]], path: str) -> None:
    """Truncation points and noise levels ε of each preference file (offline, iter1, …)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    names = list(pairs)
    points = sorted({row["truncation"] for rows in pairs.values() for row in rows})
    width = 0.8 / max(len(names), 1)
    for index, name in enumerate(names):
        counts = pd.Series([row["truncation"] for row in pairs[name]]).value_counts()
        left.bar(
            [p + index * width for p in range(len(points))],
            [int(counts.get(p, 0)) for p in points],
            width=width,
            label=name,
        )
        right.hist(
            [row["noise_level"] for row in pairs[name]],
            bins=20,
            range=(0, 1),
            histtype="step",
            label=name,
        )
    left.set_xticks(
        [p + width * (len(names) - 1) / 2 for p in range(len(points))], [str(p) for p in points]
    )
    left.set_title("truncation point i (stages kept)")
    left.set_ylabel("pairs")
    right.set_title("noise level ε")
    right.set_ylabel("pairs")
    for axis in (left, right):
        axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
    _save(figure, path)


def acceptance_rates(summaries: Mapping[str, Mapping[str, Any]], path: str) -> None:
    """Kept share of each online iteration's candidates, with why the others were not kept."""
    names = list(summaries)
    figure, axis = plt.subplots(figsize=(max(7.0, 1.2 * len(names) + 6.0), 3.6))
    reasons = sorted({r for s in summaries.values() for r in s.get("not_kept", {})})
    kept = [s["kept"] / max(s["candidates"], 1) * 100 for s in summaries.values()]
    axis.bar(names, kept, label="kept", color="tab:green")
    bottoms = kept
    # not-kept reasons in colours that cannot be confused with the green "kept"
    palette = ["tab:gray", "tab:orange", "tab:red", "tab:purple", "tab:blue", "tab:brown"]
    for index, reason in enumerate(reasons):
        share = [
            s.get("not_kept", {}).get(reason, 0) / max(s["candidates"], 1) * 100
            for s in summaries.values()
        ]
        axis.bar(names, share, bottom=bottoms, label=reason, color=palette[index % len(palette)])
        bottoms = [b + v for b, v in zip(bottoms, share, strict=True)]
    for x, value in enumerate(kept):
        axis.text(x, value / 2, f"{value:.0f}%", ha="center", va="center", color="white")
    axis.set_ylabel("share of candidates (%)")
    axis.set_title("online iterations: acceptance")
    axis.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(figure, path)


def scores_over_seeds(
    table: pd.DataFrame, baselines: Mapping[str, float], path: str | os.PathLike[str]
) -> None:
    """Score by turn per checkpoint (mean ± spread over the seeds; ``table`` as
    ``sherlock.evaluation.seed_study.seed_scores`` makes it), the blind baselines dashed."""
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    for checkpoint, rows in table.groupby("checkpoint", sort=False):
        axis.errorbar(
            rows["turn"], rows["mean"], yerr=rows["spread"], marker="o", capsize=3, label=checkpoint
        )
    styles = (":", "--", "-.")
    for (name, value), style in zip(baselines.items(), styles, strict=False):
        axis.axhline(value, color="grey", linestyle=style, linewidth=1, label=name)
    turns = sorted(table["turn"].unique())
    axis.set_xticks(turns, ["direct" if t == 0 else f"turn {t}" for t in turns])
    axis.set_ylabel("accuracy on the held-out questions (%)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    _save(figure, path)


def paired_intervals(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> None:
    """Paired differences (points) with their intervals, a colour per variant: the method's
    claims within each variant (correction gain per checkpoint, last iteration − SFT) and, when
    there are several variants, each one minus the baseline at the direct answer and the last
    turn of every checkpoint (rows as ``sherlock.evaluation.paired`` makes them)."""
    claims = [row for row in rows if row["kind"] != "variant"]
    last = {}
    for row in rows:
        if row["kind"] == "variant":
            last[row["checkpoint"]] = row["turn"]  # turns come in order: the last one stays
    versus = [
        row
        for row in rows
        if row["kind"] == "variant" and row["turn"] in ("direct", last[row["checkpoint"]])
    ]
    panels = [(claims, "within each variant"), (versus, "variant − baseline")]
    panels = [(panel, title) for panel, title in panels if panel]
    if not panels:
        raise ValueError("no paired differences to draw")
    several = len({row["benchmark"] for row in rows}) > 1
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    colours = {name: f"C{i}" for i, name in enumerate(variants)}
    height = max(len({_label(row, several) for row in panel}) for panel, _ in panels)
    figure, axes = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels) + 1.6, 0.32 * height + 1.6), squeeze=False
    )
    for axis, (panel, title) in zip(axes[0], panels, strict=True):
        labels = list(dict.fromkeys(_label(row, several) for row in panel))
        shown = list(dict.fromkeys(row["variant"] for row in panel))
        for i, variant in enumerate(shown):
            mine = [row for row in panel if row["variant"] == variant]
            offset = (i - (len(shown) - 1) / 2) * 0.8 / max(len(shown), 1)
            y = [labels.index(_label(row, several)) + offset for row in mine]
            x = [row["estimate"] for row in mine]
            error = [
                [row["estimate"] - row["low"] for row in mine],
                [row["high"] - row["estimate"] for row in mine],
            ]
            axis.errorbar(
                x, y, xerr=error, fmt="o", capsize=3, color=colours[variant], label=variant
            )
        axis.axvline(0.0, color="grey", linewidth=1)
        axis.set_yticks(range(len(labels)), labels)
        axis.invert_yaxis()
        axis.set_xlabel("difference (points), 95 % interval")
        axis.set_title(title)
        axis.grid(alpha=0.3, axis="x")
    shown = {}
    for axis in axes[0]:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            shown.setdefault(label, handle)
    axes[0][-1].legend(
        shown.values(), shown.keys(), fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0)
    )
    _save(figure, path)


def _label(row: Mapping[str, Any], with_benchmark: bool) -> str:
    if row["kind"] == "correction":
        text = f"{row['checkpoint']}: {row['turn']}"
    elif row["kind"] == "stages":
        text = f"{row['checkpoint']} (direct)"
    else:
        text = f"{row['checkpoint']}, {row['turn']}"
    return f"{row['benchmark']} · {text}" if with_benchmark else text
