"""The method's signature, checked on scores: does Sherlock's training show its effect?

The paper's pattern (docs/method.md §9): a plain chain-of-thought model (R0) gets worse when it
corrects itself, while every Sherlock stage keeps or improves its answer when correcting it, and
each stage answers better than the one before. ``signature_checks`` states each part as a goal
and says, with the numbers, whether the scores meet it. Scores are percentages; each checkpoint's
is a mean over runs (seeds) with its spread (standard deviation; 0 for a single run). "Within the
spread", ``a ≤ b`` holds when ``b + spread(b) ≥ a − spread(a)``; an order of several stages holds
when every earlier stage is at most every later one, so that small steps down, each within the
spread, cannot add up to a decline that passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import mean, stdev
from typing import Any

SHERLOCK_STAGES: tuple[str, ...] = ("sft", "offline", "iter1", "iter2")


@dataclass(frozen=True)
class Score:
    """A checkpoint's score over runs: direct answer and last correction turn (percent)."""

    direct: float
    last: float
    direct_spread: float = 0.0
    last_spread: float = 0.0


@dataclass(frozen=True)
class Check:
    goal: str
    holds: bool | None  # None: the scores needed are missing
    numbers: str


def over_runs(direct: Sequence[float], last: Sequence[float]) -> Score:
    """Mean and spread (sample standard deviation; 0 for one run) of one checkpoint's runs."""

    def spread(values: Sequence[float]) -> float:
        return stdev(values) if len(values) > 1 else 0.0

    return Score(mean(direct), mean(last), spread(direct), spread(last))


def _at_most(a: float, spread_a: float, b: float, spread_b: float) -> bool:
    return b + spread_b >= a - spread_a


def _fmt(score: float, spread: float) -> str:
    return f"{score:.1f}" + (f" ± {spread:.1f}" if spread else "")


def signature_checks(
    scores: Mapping[str, Score],
    majority_rate: float | None,
    acceptance: Mapping[int, float] | None = None,
    stages: Sequence[str] = SHERLOCK_STAGES,
) -> list[Check]:
    """Each goal of the signature with whether ``scores`` (checkpoint → Score, percent) meet it.

    ``majority_rate``: percent right by always giving the most common answer; ``acceptance``:
    online iteration → its acceptance rate (0-1), over runs.
    """
    checks = []
    r0 = scores.get("r0")
    if r0 is not None and majority_rate is not None:
        checks.append(
            Check(
                "R0 answers above the majority-answer rate (the model sees)",
                r0.direct - r0.direct_spread > majority_rate,
                f"R0 {_fmt(r0.direct, r0.direct_spread)} vs majority {majority_rate:.1f}",
            )
        )
    if r0 is not None:
        checks.append(
            Check(
                "R0's last correction turn below its direct answer",
                r0.last < r0.direct,
                f"direct {_fmt(r0.direct, r0.direct_spread)} → "
                f"last {_fmt(r0.last, r0.last_spread)}",
            )
        )
    present = [stage for stage in stages if stage in scores]
    if present:
        kept = {s: scores[s].last >= scores[s].direct for s in present}
        checks.append(
            Check(
                "every Sherlock stage's last turn at least its direct answer",
                all(kept.values()),
                "; ".join(
                    f"{s} {scores[s].direct:.1f} → {scores[s].last:.1f}"
                    + ("" if kept[s] else " (lower)")
                    for s in present
                ),
            )
        )
        ordered = [
            _at_most(
                scores[a].direct, scores[a].direct_spread, scores[b].direct, scores[b].direct_spread
            )
            for i, a in enumerate(present)
            for b in present[i + 1 :]
        ]
        checks.append(
            Check(
                " ≤ ".join(present) + " (direct, within the spread)",
                all(ordered),
                " ≤ ".join(_fmt(scores[s].direct, scores[s].direct_spread) for s in present),
            )
        )
    first, last = stages[0], stages[-1]
    if first in scores and last in scores:
        checks.append(
            Check(
                f"{last} above {first} (direct)",
                scores[last].direct > scores[first].direct,
                f"{last} {_fmt(scores[last].direct, scores[last].direct_spread)} vs {first} "
                f"{_fmt(scores[first].direct, scores[first].direct_spread)}",
            )
        )
    if acceptance and len(acceptance) > 1:
        iterations = sorted(acceptance)
        rates = [acceptance[k] for k in iterations]
        checks.append(
            Check(
                "Stage III acceptance rises from iteration to iteration",
                all(b > a for a, b in zip(rates, rates[1:], strict=False)),
                " → ".join(f"iter{k} {acceptance[k]:.1%}" for k in iterations),
            )
        )
    return checks


def checks_as_rows(checks: Sequence[Check]) -> list[dict[str, Any]]:
    """Plain rows (goal, holds, numbers) for tables and JSON."""
    return [asdict(check) for check in checks]
