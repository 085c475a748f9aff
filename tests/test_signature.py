"""The method's signature checked on scores, and the blind baselines and distinct answers."""

from __future__ import annotations

import pytest

from sherlock.evaluation.evaluate import majority_rates, summarise
from sherlock.evaluation.signature import Score, over_runs, signature_checks

# Shaped like the paper's Llama-3.2-Vision table (direct, self-corrected): R0 loses by correcting
# itself, every Sherlock stage gains, each stage above the last.
PAPER_LIKE = {
    "r0": Score(54.0, 52.1),
    "sft": Score(54.5, 55.9),
    "offline": Score(55.2, 56.4),
    "iter1": Score(55.7, 56.8),
    "iter2": Score(55.9, 57.3),
}


def _met(checks):
    return {check.goal: check.holds for check in checks}


def test_the_papers_pattern_meets_every_goal():
    checks = signature_checks(PAPER_LIKE, majority_rate=25.0, acceptance={1: 0.4, 2: 0.55})
    assert len(checks) == 6 and all(check.holds for check in checks)
    assert checks[0].numbers == "R0 54.0 vs majority 25.0"
    assert checks[3].goal == "sft ≤ offline ≤ iter1 ≤ iter2 (direct, within the spread)"
    assert checks[-1].numbers == "iter1 40.0% → iter2 55.0%"


def test_each_goal_fails_on_its_own_counterexample():
    collapsed = dict(PAPER_LIKE, iter2=Score(30.0, 30.0))
    met = _met(signature_checks(collapsed, majority_rate=25.0, acceptance={1: 0.5, 2: 0.4}))
    assert met["R0 answers above the majority-answer rate (the model sees)"] is True
    assert met["sft ≤ offline ≤ iter1 ≤ iter2 (direct, within the spread)"] is False
    assert met["iter2 above sft (direct)"] is False
    assert met["Stage III acceptance rises from iteration to iteration"] is False
    blind = dict(PAPER_LIKE, r0=Score(24.0, 26.0), sft=Score(50.0, 49.0))
    met = _met(signature_checks(blind, majority_rate=25.0))
    assert met["R0 answers above the majority-answer rate (the model sees)"] is False
    assert met["R0's last correction turn below its direct answer"] is False
    assert met["every Sherlock stage's last turn at least its direct answer"] is False
    assert "Stage III acceptance rises from iteration to iteration" not in met


def test_the_spread_decides_order_and_clear_margins():
    # offline 1 point below sft: within a spread of 0.8 + 0.4 it still counts as "not below"
    noisy = dict(
        PAPER_LIKE, offline=Score(53.5, 56.0, direct_spread=0.8), sft=Score(54.5, 56.0, 0.4)
    )
    assert _met(signature_checks(noisy, None))[
        "sft ≤ offline ≤ iter1 ≤ iter2 (direct, within the spread)"
    ]
    apart = dict(noisy, offline=Score(53.0, 56.0, direct_spread=0.5))
    assert not _met(signature_checks(apart, None))[
        "sft ≤ offline ≤ iter1 ≤ iter2 (direct, within the spread)"
    ]
    # each step down within the spread, but together a decline beyond it (the demo's 3 seeds)
    sliding = dict(
        PAPER_LIKE,
        sft=Score(44.3, 40.2, direct_spread=0.3),
        offline=Score(42.2, 40.2, direct_spread=2.9),
        iter1=Score(40.0, 37.7, direct_spread=3.6),
        iter2=Score(36.7, 28.5, direct_spread=2.5),
    )
    assert not _met(signature_checks(sliding, None))[
        "sft ≤ offline ≤ iter1 ≤ iter2 (direct, within the spread)"
    ]
    # "clearly above": R0's mean less one spread must clear the majority rate
    shaky = dict(PAPER_LIKE, r0=Score(27.0, 20.0, direct_spread=3.0))
    assert not _met(signature_checks(shaky, 25.0))[
        "R0 answers above the majority-answer rate (the model sees)"
    ]


def test_over_runs_is_mean_and_sample_spread():
    score = over_runs([40.0, 50.0, 60.0], [30.0, 30.0, 33.0])
    assert score.direct == 50.0 and score.direct_spread == pytest.approx(10.0)
    assert score.last == 31.0 and score.last_spread == pytest.approx(3**0.5)
    assert over_runs([42.0], [41.0]).direct_spread == 0.0


def _row(answer, predictions, question_type=None):
    statuses = ["correct" if p == answer else "wrong" for p in predictions]
    meta = {"question_type": question_type} if question_type else {}
    turns = [str(p) for p in predictions]  # no four-stage format: every answer read whole
    return {"answer": answer, "predictions": predictions, "statuses": statuses, "meta": meta,
            "turns": turns}  # fmt: skip


def test_blind_baselines_and_distinct_answers_from_known_rows():
    rows = [
        _row("left", ["left", "left"], "position"),
        _row("left", ["left", "Left."], "position"),
        _row("right", ["left", None], "position"),
        _row("red", ["left", "red"], "colour"),
        _row("blue", ["left", "red"], "colour"),
    ]
    # "left" is 2 of 5; per type: left 2 of 3 positions, one of the two colours
    assert majority_rates(rows) == {"majority_rate": 0.4, "type_majority_rate": 0.6}
    summary = summarise(rows, rounds=1)
    # turn 0: every answer "left" (collapsed); turn 1: left, red ("Left." normalises to left)
    assert [t["distinct_answers"] for t in summary["turns"]] == [1, 2]
    assert summary["majority_rate"] == 0.4 and summary["type_majority_rate"] == 0.6
    assert [t["no_format"] for t in summary["turns"]] == [1.0, 1.0]
    untyped = [_row("a", ["a"]), _row("b", ["a"], "x")]
    assert majority_rates(untyped) == {"majority_rate": 0.5, "type_majority_rate": None}
