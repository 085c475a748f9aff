"""Paired differences with bootstrap intervals: is a difference between two sets of answers more
than noise?

An evaluation's responses file (``<checkpoint>_responses.json``, or ``_judged.json`` for open
answers) says for every question whether each turn was right (``read_outcomes``). A difference
compares two such sets on the same questions and seeds: a variant against the baseline at one
checkpoint and turn (``variant_rows``); within one variant, a checkpoint's last correction turn
against its direct answer, and the last iteration's direct answer against SFT's (``claim_rows``).

Its estimate is the mean over seeds of each seed's difference in percent right. Its interval is
the percentile interval of a two-level bootstrap (``difference_interval``): the seeds are drawn
with replacement, then the questions of each drawn seed, a question's two answers kept together
(paired). When two evaluations did not ask the same questions (a variant that changes the
held-out data), each side's questions are drawn on their own (unpaired) and the row says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sherlock.evaluation.scoring import CORRECT

ItemKey = tuple[str, int]  # (item id, how many items with that id came before it)

# Items drawn at once per seed in a resample batch: bounds the index array of one batch.
_BATCH_CELLS = 4_000_000


class OutcomeError(ValueError):
    """A responses file that cannot be compared; the message names the file, item and field."""


@dataclass(frozen=True)
class Outcomes:
    """One evaluation's questions and whether each turn answered them right."""

    keys: tuple[ItemKey, ...]
    identities: tuple[str, ...]  # a hash of each question, its image and its answer
    correct: np.ndarray  # items × turns, bool

    @property
    def turns(self) -> int:
        return int(self.correct.shape[1])


def outcomes_from_rows(rows: Sequence[Mapping[str, Any]], source: str = "responses") -> Outcomes:
    """Outcomes of the rows an evaluation wrote (each with ``id`` and ``statuses`` per turn)."""
    keys, identities, correct = [], [], []
    seen: dict[str, int] = {}
    turns = None
    for index, row in enumerate(rows):
        for field in ("id", "statuses"):
            if field not in row:
                raise OutcomeError(f"{source}: item {index} has no {field!r}")
        statuses = row["statuses"]
        if turns is None:
            turns = len(statuses)
        if len(statuses) != turns or not turns:
            raise OutcomeError(
                f"{source}: item {index} ({row['id']}) has {len(statuses)} statuses, "
                f"the first item {turns}"
            )
        item_id = str(row["id"])
        keys.append((item_id, seen.get(item_id, 0)))
        seen[item_id] = seen.get(item_id, 0) + 1
        what = json.dumps([row.get("question"), row.get("image"), row.get("answer")])
        identities.append(hashlib.sha256(what.encode()).hexdigest()[:16])
        correct.append([status == CORRECT for status in statuses])
    if not keys:
        raise OutcomeError(f"{source}: no items")
    return Outcomes(tuple(keys), tuple(identities), np.array(correct, dtype=bool))


def read_outcomes(path: str | os.PathLike[str]) -> Outcomes:
    """The outcomes of an evaluation's responses (or judged) file."""
    with open(path, encoding="utf-8") as handle:
        try:
            rows = json.load(handle)
        except json.JSONDecodeError as error:
            raise OutcomeError(f"{path}: not JSON ({error})") from None
    if not isinstance(rows, list):
        raise OutcomeError(f"{path}: a list of items expected")
    return outcomes_from_rows(rows, str(path))


def align(a: Outcomes, b: Outcomes) -> tuple[np.ndarray, np.ndarray, bool]:
    """The rows of ``a`` and ``b`` as two boolean arrays (items × turns) and whether they are
    paired: the same questions, ``b``'s put in ``a``'s order. Otherwise each keeps its own."""
    if a.keys == b.keys and a.identities == b.identities:
        return a.correct, b.correct, True
    position = {key: i for i, key in enumerate(b.keys)}
    order = [position.get(key) for key in a.keys]
    same = (
        len(a.keys) == len(b.keys)
        and None not in order
        and all(a.identities[i] == b.identities[j] for i, j in enumerate(order))
    )
    if same:
        return a.correct, b.correct[order], True
    return a.correct, b.correct, False


@dataclass(frozen=True)
class Interval:
    """A difference (percentage points) and its bootstrap interval."""

    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn: ``resamples`` draws from a generator seeded with ``seed``."""

    resamples: int = 2000
    seed: int = 0
    confidence: float = 0.95


def difference_interval(
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    paired: bool,
    settings: Bootstrap = Bootstrap(),
) -> Interval:
    """mean over seeds of (mean of ``a[s]`` − mean of ``b[s]``), and its percentile interval.

    ``a[s]``, ``b[s]``: the values (e.g. 100 for right, 0 for wrong) of seed s's questions; when
    ``paired`` the same questions in the same order. Each resample draws len(a) seeds with
    replacement, then for each drawn seed its questions with replacement (the same draw for both
    sides when paired, a draw per side otherwise), and averages the drawn seeds' differences.
    """
    if len(a) != len(b) or not a:
        raise ValueError("one array per seed on both sides, at least one seed")
    a = [np.asarray(values, dtype=float) for values in a]
    b = [np.asarray(values, dtype=float) for values in b]
    for s, (x, y) in enumerate(zip(a, b, strict=True)):
        if not x.size or not y.size or (paired and x.shape != y.shape):
            raise ValueError(f"seed {s}: {x.size} and {y.size} values (paired: {paired})")
    estimate = float(np.mean([x.mean() - y.mean() for x, y in zip(a, b, strict=True)]))
    rng = np.random.default_rng(settings.seed)
    seeds = len(a)
    draws = rng.integers(0, seeds, size=(settings.resamples, seeds))
    per_slot = np.zeros((settings.resamples, seeds))
    for slot in range(seeds):
        for s in range(seeds):
            rows = np.flatnonzero(draws[:, slot] == s)
            if rows.size:
                per_slot[rows, slot] = _resampled_differences(rng, a[s], b[s], paired, rows.size)
    statistics = per_slot.mean(axis=1)
    tail = (1 - settings.confidence) / 2
    low, high = np.quantile(statistics, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high))


def _resampled_differences(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, paired: bool, count: int
) -> np.ndarray:
    """``count`` resampled differences of one seed: its questions drawn with replacement."""
    out = np.empty(count)
    batch = max(1, _BATCH_CELLS // max(x.size, y.size))
    for start in range(0, count, batch):
        n = min(batch, count - start)
        if paired:
            d = x - y
            out[start : start + n] = d[rng.integers(0, d.size, size=(n, d.size))].mean(axis=1)
        else:
            xs = x[rng.integers(0, x.size, size=(n, x.size))].mean(axis=1)
            ys = y[rng.integers(0, y.size, size=(n, y.size))].mean(axis=1)
            out[start : start + n] = xs - ys
    return out


# Runs of an ablation: variant → seed → benchmark → checkpoint → outcomes.
Runs = Mapping[str, Mapping[int, Mapping[str, Mapping[str, Outcomes]]]]


def _row(
    kind: str,
    benchmark: str,
    variant: str,
    against: str,
    checkpoint: str,
    turn: str,
    interval: Interval,
    paired: bool,
    items: Sequence[int],
) -> dict[str, Any]:
    return {
        "kind": kind,
        "benchmark": benchmark,
        "variant": variant,
        "against": against,
        "checkpoint": checkpoint,
        "turn": turn,
        "estimate": interval.estimate,
        "low": interval.low,
        "high": interval.high,
        "excludes_zero": interval.excludes_zero,
        "paired": paired,
        "seeds": len(items),
        "items": int(sum(items)),
    }


def turn_name(turn: int) -> str:
    return "direct" if turn == 0 else f"turn {turn}"


def _common(runs: Runs, variants: Sequence[str]) -> tuple[list[int], list[str]]:
    """Seeds and benchmarks every one of ``variants`` has."""
    seeds = sorted(set.intersection(*(set(runs[v]) for v in variants)))
    benchmarks = (
        [
            b
            for b in runs[variants[0]][seeds[0]]
            if all(b in runs[v][s] for v in variants for s in seeds)
        ]
        if seeds
        else []
    )
    return seeds, benchmarks


def variant_rows(runs: Runs, baseline: str, settings: Bootstrap = Bootstrap()) -> list[dict]:
    """Every other variant minus ``baseline``: per benchmark, checkpoint both evaluated, and turn
    both have, on the seeds both have."""
    rows = []
    for variant in runs:
        if variant == baseline:
            continue
        seeds, benchmarks = _common(runs, [variant, baseline])
        for benchmark in benchmarks:
            checkpoints = [
                c
                for c in runs[variant][seeds[0]][benchmark]
                if all(c in runs[v][s][benchmark] for v in (variant, baseline) for s in seeds)
            ]
            for checkpoint in checkpoints:
                pairs = [
                    align(
                        runs[variant][s][benchmark][checkpoint],
                        runs[baseline][s][benchmark][checkpoint],
                    )
                    for s in seeds
                ]
                paired = all(p for _, _, p in pairs)
                turns = min(min(x.shape[1], y.shape[1]) for x, y, _ in pairs)
                for turn in range(turns):
                    interval = difference_interval(
                        [100.0 * x[:, turn] for x, _, _ in pairs],
                        [100.0 * y[:, turn] for _, y, _ in pairs],
                        paired,
                        settings,
                    )
                    rows.append(
                        _row(
                            "variant",
                            benchmark,
                            variant,
                            baseline,
                            checkpoint,
                            turn_name(turn),
                            interval,
                            paired,
                            [len(x) for x, _, _ in pairs],
                        )
                    )
    return rows


def last_iteration(checkpoints: Sequence[str]) -> str | None:
    """The last online iteration among ``checkpoints`` (iter2 of base ... iter2), if any."""
    iterations = [c for c in checkpoints if re.fullmatch(r"iter\d+", c)]
    return max(iterations, key=lambda c: int(c[4:])) if iterations else None


def claim_rows(runs: Runs, settings: Bootstrap = Bootstrap()) -> list[dict]:
    """The method's own claims within each variant, per benchmark: every checkpoint's last
    correction turn minus its direct answer ("correction"), and the last iteration's direct
    answer minus SFT's ("stages")."""
    rows = []
    for variant in runs:
        seeds, benchmarks = _common(runs, [variant])
        for benchmark in benchmarks:
            by_seed = [runs[variant][s][benchmark] for s in seeds]
            checkpoints = [c for c in by_seed[0] if all(c in found for found in by_seed)]
            for checkpoint in checkpoints:
                sets = [found[checkpoint].correct for found in by_seed]
                last = min(x.shape[1] for x in sets) - 1
                if last < 1:
                    continue
                interval = difference_interval(
                    [100.0 * x[:, last] for x in sets],
                    [100.0 * x[:, 0] for x in sets],
                    True,
                    settings,
                )
                rows.append(
                    _row(
                        "correction",
                        benchmark,
                        variant,
                        variant,
                        checkpoint,
                        f"{turn_name(last)} − direct",
                        interval,
                        True,
                        [len(x) for x in sets],
                    )
                )
            final = last_iteration(checkpoints)
            if final and "sft" in checkpoints:
                pairs = [align(found[final], found["sft"]) for found in by_seed]
                paired = all(p for _, _, p in pairs)
                interval = difference_interval(
                    [100.0 * x[:, 0] for x, _, _ in pairs],
                    [100.0 * y[:, 0] for _, y, _ in pairs],
                    paired,
                    settings,
                )
                rows.append(
                    _row(
                        "stages",
                        benchmark,
                        variant,
                        variant,
                        f"{final} − sft",
                        "direct",
                        interval,
                        paired,
                        [len(x) for x, _, _ in pairs],
                    )
                )
    return rows


def expected_sign(row: Mapping[str, Any]) -> int | None:
    """The sign the method's signature predicts for a claim: R0's correction hurts (−), every
    Sherlock stage's helps (+), the last iteration answers better than SFT (+); None: no claim."""
    if row["kind"] == "stages":
        return 1
    if row["kind"] == "correction":
        checkpoint = row["checkpoint"]
        if checkpoint == "r0":
            return -1
        if checkpoint in ("sft", "offline") or re.fullmatch(r"iter\d+", checkpoint):
            return 1
    return None


def signature_goals(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each claim with a predicted sign as a goal: met when its whole interval is on that side
    of zero (the paired interval excludes zero in the predicted direction)."""
    goals = []
    for row in rows:
        sign = expected_sign(row)
        if sign is None:
            continue
        if row["kind"] == "stages":
            goal = f"{row['checkpoint'].replace(' − ', ' above ')} (direct)"
        else:
            verb = "hurts" if sign < 0 else "helps"
            goal = f"{row['checkpoint']}'s self-correction {verb} ({row['turn']})"
        met = row["high"] < 0 if sign < 0 else row["low"] > 0
        goals.append(
            {
                "variant": row["variant"],
                "benchmark": row["benchmark"],
                "goal": goal,
                "holds": bool(met),
                "numbers": format_interval(row),
            }
        )
    return goals


def format_interval(row: Mapping[str, Any]) -> str:
    """ "+1.4 [+0.3, +2.5]": a difference in points and its interval."""
    return f"{row['estimate']:+.1f} [{row['low']:+.1f}, {row['high']:+.1f}]"


def difference_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a table to read: what is compared, the difference (points) and its interval,
    whether it excludes zero, paired or not, seeds and questions."""
    return pd.DataFrame(
        {
            "benchmark": [row["benchmark"] for row in rows],
            "variant": [row["variant"] for row in rows],
            "minus": [row["against"] if row["kind"] == "variant" else "" for row in rows],
            "checkpoint": [row["checkpoint"] for row in rows],
            "turn": [row["turn"] for row in rows],
            "difference [95 % interval]": [format_interval(row) for row in rows],
            "excludes 0": ["yes" if row["excludes_zero"] else "no" for row in rows],
            "paired": ["yes" if row["paired"] else "no" for row in rows],
            "seeds": [row["seeds"] for row in rows],
            "questions": [row["items"] for row in rows],
        }
    )
