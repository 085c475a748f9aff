"""Paired differences with bootstrap intervals (sherlock.evaluation.paired), against cases whose
bootstrap distribution is known by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sherlock.evaluation.paired import (
    Bootstrap,
    OutcomeError,
    align,
    claim_rows,
    difference_interval,
    outcomes_from_rows,
    read_outcomes,
    signature_goals,
    variant_rows,
)

SETTINGS = Bootstrap(resamples=4000, seed=3, confidence=0.95)


def test_one_seed_three_questions_interval_is_the_enumerated_bootstrap():
    """One seed, three questions, per-question differences 100, 0, 0 (points): a resample's mean
    is 100·k/3 with k ~ Binomial(3, 1/3), so P(0) = 8/27 (> 2.5 %) and P(100) = 1/27 = 3.7 %
    (> 2.5 %): the 95 % interval is [0, 100] around the estimate 33.3."""
    interval = difference_interval(
        [np.array([100.0, 0.0, 0.0])], [np.zeros(3)], paired=True, settings=SETTINGS
    )
    assert interval.estimate == pytest.approx(100 / 3)
    assert (interval.low, interval.high) == (0.0, 100.0)
    assert not interval.excludes_zero


def test_the_seeds_are_resampled_too():
    """Two seeds whose questions all differ by 100 and 0: resampling the questions alone would
    give the single value 50; drawing the seeds gives 100, 50 or 0 (each pair of draws), with
    P(0) = P(100) = 1/4, so the interval is [0, 100]."""
    interval = difference_interval(
        [np.full(2, 100.0), np.zeros(2)], [np.zeros(2), np.zeros(2)], True, SETTINGS
    )
    assert interval.estimate == 50.0
    assert (interval.low, interval.high) == (0.0, 100.0)


def test_a_difference_every_resample_agrees_on_excludes_zero():
    """Every question of both seeds right in a, wrong in b: every resample is 100."""
    interval = difference_interval([np.full(5, 100.0)] * 2, [np.zeros(5)] * 2, True, SETTINGS)
    assert (interval.estimate, interval.low, interval.high) == (100.0, 100.0, 100.0)
    assert interval.excludes_zero


def test_pairing_removes_what_both_sides_share():
    """The same questions right or wrong on both sides but one: paired, every question's
    difference is 0 except one, and the interval is narrow; unpaired, each side's draw varies
    with the questions and the interval is wide."""
    shared = np.array([100.0] * 20 + [0.0] * 20)
    better = shared.copy()
    better[20] = 100.0  # one question fixed
    paired = difference_interval([better], [shared], True, SETTINGS)
    unpaired = difference_interval([better], [shared], False, SETTINGS)
    assert paired.estimate == unpaired.estimate == pytest.approx(2.5)
    assert paired.high - paired.low < (unpaired.high - unpaired.low) / 2
    assert paired.low == 0.0  # the one question drawn no time


def test_the_same_seed_gives_the_same_interval():
    rng = np.random.default_rng(0)
    a = [100.0 * (rng.random(50) < 0.5) for _ in range(3)]
    b = [100.0 * (rng.random(50) < 0.4) for _ in range(3)]
    assert difference_interval(a, b, True, SETTINGS) == difference_interval(a, b, True, SETTINGS)


def rows(statuses: list[list[str]], prefix: str = "q") -> list[dict]:
    return [
        {
            "id": f"{prefix}{i}",
            "question": f"Q{i}",
            "answer": "A",
            "image": f"{i}.png",
            "statuses": turns,
        }
        for i, turns in enumerate(statuses)
    ]


R, W = "correct", "wrong"


def test_outcomes_are_right_or_not_per_turn_and_questions_are_matched_by_id():
    a = outcomes_from_rows(rows([[R, W], [W, W], [W, R]]))
    assert a.correct.tolist() == [[True, False], [False, False], [False, True]]
    shuffled = outcomes_from_rows(list(reversed(rows([[W, W], [R, R], [R, W]]))))
    x, y, paired = align(a, shuffled)
    assert paired and y.tolist() == [[False, False], [True, True], [True, False]]
    other = outcomes_from_rows(rows([[R, W], [W, W], [W, R]], prefix="z"))
    assert align(a, other)[2] is False  # not the same questions: unpaired


def test_a_bad_responses_file_names_the_file_the_item_and_the_field(tmp_path):
    path = tmp_path / "r0_responses.json"
    path.write_text(json.dumps([{"id": "q0", "statuses": [R]}, {"id": "q1"}]))
    with pytest.raises(OutcomeError, match=r"r0_responses\.json: item 1 has no 'statuses'"):
        read_outcomes(path)


def ablation(variant_b: list[list[list[str]]] | None = None) -> dict:
    """Two seeds of variants a (and b): checkpoints r0, sft, iter1, two turns."""
    base = {
        "r0": [[[R, W], [R, W], [W, W]], [[R, W], [R, R], [W, W]]],
        "sft": [[[R, R], [W, W], [W, R]], [[W, W], [R, R], [W, R]]],
        "iter1": [[[R, R], [R, R], [W, R]], [[R, R], [R, R], [W, W]]],
    }
    runs = {
        "a": {
            seed: {"heldout": {c: outcomes_from_rows(rows(v[i])) for c, v in base.items()}}
            for i, seed in enumerate((1, 2))
        }
    }
    if variant_b is not None:
        runs["b"] = {
            seed: {
                "heldout": {
                    c: outcomes_from_rows(rows(variant_b[i] if c == "iter1" else v[i]))
                    for c, v in base.items()
                }
            }
            for i, seed in enumerate((1, 2))
        }
    return runs


def test_a_variant_without_overrides_differs_by_exactly_zero():
    runs = ablation()
    runs["same"] = runs["a"]
    differences = variant_rows(runs, "a", SETTINGS)
    assert len(differences) == 3 * 2  # checkpoints × turns
    assert all((row["estimate"], row["low"], row["high"]) == (0.0, 0.0, 0.0) for row in differences)
    assert not any(row["excludes_zero"] for row in differences)


def test_variant_rows_compare_the_same_checkpoint_turn_and_questions():
    # b's iter1: seed 1 one question more right at both turns, seed 2 as a
    runs = ablation([[[R, R], [R, R], [R, R]], [[R, R], [R, R], [W, W]]])
    by_key = {(r["checkpoint"], r["turn"]): r for r in variant_rows(runs, "a", SETTINGS)}
    assert by_key[("r0", "direct")]["estimate"] == 0.0
    # (100/3 + 0) / 2 at the direct answer; (0 + 0) / 2 at turn 1 (seed 1's third was right)
    assert by_key[("iter1", "direct")]["estimate"] == pytest.approx(50 / 3)
    assert by_key[("iter1", "turn 1")]["estimate"] == 0.0
    assert by_key[("iter1", "direct")]["paired"] and by_key[("iter1", "direct")]["items"] == 6


def test_claims_are_each_checkpoints_correction_gain_and_the_last_iteration_over_sft():
    claims = {(r["kind"], r["checkpoint"]): r for r in claim_rows(ablation(), SETTINGS)}
    # r0: right 2/3 → 0/3 and 2/3 → 1/3: (−200/3 − 100/3) / 2 = −50
    assert claims[("correction", "r0")]["estimate"] == pytest.approx(-50.0)
    assert claims[("correction", "r0")]["turn"] == "turn 1 − direct"
    # sft: 1/3 → 2/3 and 1/3 → 2/3: +33.3
    assert claims[("correction", "sft")]["estimate"] == pytest.approx(100 / 3)
    # iter1 − sft, direct: (2/3 − 1/3) and (2/3 − 1/3): +33.3
    assert claims[("stages", "iter1 − sft")]["estimate"] == pytest.approx(100 / 3)
    goals = {goal["goal"]: goal for goal in signature_goals(list(claims.values()))}
    assert set(goals) == {
        "r0's self-correction hurts (turn 1 − direct)",
        "sft's self-correction helps (turn 1 − direct)",
        "iter1's self-correction helps (turn 1 − direct)",
        "iter1 above sft (direct)",
    }
    r0 = claims[("correction", "r0")]
    assert goals["r0's self-correction hurts (turn 1 − direct)"]["holds"] == (r0["high"] < 0)
