"""The Sherlock objective (docs/method.md §6) against hand-computed numbers."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from sherlock.preference.losses import SEQUENCE_NAMES
from sherlock.preference.losses import sherlock_loss as _sherlock_loss

# The coefficients are required arguments; these tests use the method's 0.2 / 0.8.
sherlock_loss = partial(_sherlock_loss, dpo_coef=0.2, sc_coef=0.8)

# Two records of hand-chosen summed log-probs; the Δ values are worked out in the comments.
POLICY = {
    "direct_w": [-10.0, -20.0],
    "direct_l": [-12.0, -18.0],
    "l_A1": [-5.0, -7.0],
    "l_B1": [-6.0, -7.5],
    "l_A2": [-4.0, -3.0],
    "l_B2": [-4.0, -2.0],
    "w_A1": [-1.0, -2.0],
    "w_B1": [-3.0, -2.0],
    "w_A2": [-2.0, -6.0],
    "w_B2": [-2.5, -5.0],
}
REFERENCE = {
    "direct_w": [-11.0, -19.0],
    "direct_l": [-11.0, -19.0],
    "l_A1": [-5.5, -7.0],
    "l_B1": [-5.5, -7.0],
    "l_A2": [-4.0, -3.5],
    "l_B2": [-3.0, -2.5],
    "w_A1": [-1.0, -2.0],
    "w_B1": [-2.0, -2.0],
    "w_A2": [-2.0, -6.0],
    "w_B2": [-2.0, -6.0],
}
BETA_DPO = [0.1, 0.2]
BETA_SC = [0.025, 0.5]

# Record 0: Δdirect = (-10+12) - (-11+11) = 2
#           Δ(l_A1,l_B1) = (-5+6) - (-5.5+5.5) = 1,  Δ(l_A2,l_B2) = (-4+4) - (-4+3) = 1  → sum 2
#           Δ(w_A1,w_B1) = (-1+3) - (-1+2) = 1,      Δ(w_A2,w_B2) = (-2+2.5) - (-2+2) = 0.5 → 1.5
# Record 1: Δdirect = (-20+18) - (-19+19) = -2
#           Δ(l_A1,l_B1) = (-7+7.5) - 0 = 0.5,       Δ(l_A2,l_B2) = (-3+2) - (-3.5+2.5) = 0 → 0.5
#           Δ(w_A1,w_B1) = 0 - 0 = 0,                Δ(w_A2,w_B2) = (-6+5) - 0 = -1        → -1
DPO_LOGITS = [0.1 * 2, 0.2 * -2]  # beta_dpo · Δdirect
SC_REJECTED = [0.025 * 2, 0.5 * 0.5]  # beta_sc · (Δ(l_A1,l_B1) + Δ(l_A2,l_B2))
SC_CHOSEN = [0.025 * 1.5, 0.5 * -1]  # beta_sc · (Δ(w_A1,w_B1) + Δ(w_A2,w_B2))


def _neg_log_sigmoid(x: float) -> float:
    return -math.log(1.0 / (1.0 + math.exp(-x)))


L_DPO = [_neg_log_sigmoid(x) for x in DPO_LOGITS]
L_SC_REJECTED = [(1 - x) ** 2 for x in SC_REJECTED]  # 0.95², 0.75²
L_SC_CHOSEN = [(1 - x) ** 2 for x in SC_CHOSEN]  # 0.9625², 1.5²


def tensors(table: dict[str, list[float]], grad: bool = False) -> dict[str, torch.Tensor]:
    return {
        key: torch.tensor(values, dtype=torch.float64, requires_grad=grad)
        for key, values in table.items()
    }


def t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_sequence_names_follow_method_naming() -> None:
    assert SEQUENCE_NAMES == (
        "direct_w",
        "direct_l",
        "l_A1",
        "l_B1",
        "l_A2",
        "l_B2",
        "w_A1",
        "w_B1",
        "w_A2",
        "w_B2",
    )
    assert set(POLICY) == set(SEQUENCE_NAMES)


def test_loss_and_metrics_match_hand_computation() -> None:
    loss, metrics = sherlock_loss(tensors(POLICY), tensors(REFERENCE), t(BETA_DPO), t(BETA_SC))
    per_record = [0.2 * L_DPO[k] + 0.8 * (L_SC_REJECTED[k] + L_SC_CHOSEN[k]) for k in range(2)]
    expected = mean(per_record)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # The same number written out: 0.2·mean(log(1+e^-0.2), log(1+e^0.4)) + 0.8·mean(…)
    written = (
        0.2 * (math.log1p(math.exp(-0.2)) + math.log1p(math.exp(0.4)))
        + 0.8 * (0.95**2 + 0.9625**2 + 0.75**2 + 1.5**2)
    ) / 2
    assert loss.item() == pytest.approx(written, rel=1e-12)

    # rewards β·(ℓθ − ℓref): chosen (0.1·1, 0.2·-1), rejected (0.1·-1, 0.2·1)
    expected_metrics = {
        "loss/total": expected,
        "loss/dpo": mean(L_DPO),
        "loss/sc_rejected": mean(L_SC_REJECTED),
        "loss/sc_chosen": mean(L_SC_CHOSEN),
        "rewards/chosen": (0.1 - 0.2) / 2,
        "rewards/rejected": (-0.1 + 0.2) / 2,
        "rewards/margins": (0.2 + -0.4) / 2,
        "rewards/accuracies": 0.5,
        "rewards_sc_rejected/margins": (0.05 + 0.25) / 2,
        "rewards_sc_rejected/accuracies": 1.0,
        "rewards_sc_chosen/margins": (0.0375 - 0.5) / 2,
        "rewards_sc_chosen/accuracies": 0.5,
        "logps/chosen": -15.0,
        "logps/rejected": -15.0,
        # Each refinement pair's rewards β_sc·(ℓθ − ℓref), record means (β_sc = 0.025, 0.5):
        # l_A1 ratios (0.5, 0) → (0.0125, 0); l_B1 (-0.5, -0.5) → (-0.0125, -0.25)
        "rewards_sc_rejected/pair1_chosen": 0.00625,
        "rewards_sc_rejected/pair1_rejected": -0.13125,
        # l_A2 (0, 0.5) → (0, 0.25); l_B2 (-1, 0.5) → (-0.025, 0.25)
        "rewards_sc_rejected/pair2_chosen": 0.125,
        "rewards_sc_rejected/pair2_rejected": 0.1125,
        # w_A1 (0, 0); w_B1 (-1, 0) → (-0.025, 0)
        "rewards_sc_chosen/pair1_chosen": 0.0,
        "rewards_sc_chosen/pair1_rejected": -0.0125,
        # w_A2 (0, 0); w_B2 (-0.5, 1) → (-0.0125, 0.5)
        "rewards_sc_chosen/pair2_chosen": 0.0,
        "rewards_sc_chosen/pair2_rejected": 0.24375,
    }
    assert set(metrics) == set(expected_metrics)  # no loss/sft unless it is used
    for key, value in expected_metrics.items():
        assert isinstance(metrics[key], float), key
        assert metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_coefficients_are_applied() -> None:
    loss, _ = sherlock_loss(
        tensors(POLICY), tensors(REFERENCE), t(BETA_DPO), t(BETA_SC), dpo_coef=0.5, sc_coef=2.0
    )
    expected = mean([0.5 * L_DPO[k] + 2.0 * (L_SC_REJECTED[k] + L_SC_CHOSEN[k]) for k in range(2)])
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_sc_coef_zero_is_plain_sigmoid_dpo() -> None:
    policy, reference = tensors(POLICY), tensors(REFERENCE)
    beta = t(BETA_DPO)
    loss, _ = sherlock_loss(policy, reference, beta, t(BETA_SC), dpo_coef=1.0, sc_coef=0.0)
    # Independently: DPO's −logσ(β·[(πw − πl) − (refw − refl)]).
    logits = beta * (
        (policy["direct_w"] - policy["direct_l"]) - (reference["direct_w"] - reference["direct_l"])
    )
    torch.testing.assert_close(loss, (-F.logsigmoid(logits)).mean())


def test_dpo_known_number() -> None:
    # One record, Δ = 2, β = 0.1: −logσ(0.2) = log(1 + e^-0.2) = 0.5981388693815918
    policy = {key: t([0.0]) for key in SEQUENCE_NAMES}
    reference = {key: t([0.0]) for key in SEQUENCE_NAMES}
    policy["direct_w"] = t([2.0])
    loss, metrics = sherlock_loss(policy, reference, t([0.1]), t([0.0]), dpo_coef=1.0, sc_coef=0.0)
    assert loss.item() == pytest.approx(0.5981388693815918, rel=1e-12)
    assert metrics["rewards/accuracies"] == 1.0


def test_dpo_is_stable_for_large_margins() -> None:
    policy = {key: t([0.0]) for key in SEQUENCE_NAMES}
    reference = {key: t([0.0]) for key in SEQUENCE_NAMES}
    policy["direct_l"] = t([5000.0])  # logit −500: a naive log(sigmoid) gives inf
    loss, _ = sherlock_loss(policy, reference, t([0.1]), t([0.0]), dpo_coef=1.0, sc_coef=0.0)
    assert loss.item() == pytest.approx(500.0, rel=1e-9)


def test_betas_are_per_record() -> None:
    """The batch loss is the mean of each record's loss under its own betas."""
    policy, reference = tensors(POLICY), tensors(REFERENCE)
    batch, _ = sherlock_loss(policy, reference, t(BETA_DPO), t(BETA_SC))
    singles = []
    for k in range(2):
        loss_k, _ = sherlock_loss(
            {n: v[k : k + 1] for n, v in policy.items()},
            {n: v[k : k + 1] for n, v in reference.items()},
            t(BETA_DPO[k : k + 1]),
            t(BETA_SC[k : k + 1]),
        )
        singles.append(loss_k.item())
    assert batch.item() == pytest.approx(mean(singles), rel=1e-12)
    swapped, _ = sherlock_loss(policy, reference, t(BETA_DPO[::-1]), t(BETA_SC[::-1]))
    assert swapped.item() != pytest.approx(batch.item(), rel=1e-6)


def test_dpo_gradient_raises_chosen_and_lowers_rejected() -> None:
    policy, reference = tensors(POLICY, grad=True), tensors(REFERENCE)
    loss, _ = sherlock_loss(policy, reference, t(BETA_DPO), t(BETA_SC), dpo_coef=1.0, sc_coef=0.0)
    loss.backward()
    assert (policy["direct_w"].grad < 0).all()
    assert (policy["direct_l"].grad > 0).all()
    # dL/dℓθ(w) = −β·σ(−βΔ)/N: record 0 has βΔ = 0.2
    assert policy["direct_w"].grad[0].item() == pytest.approx(
        -0.1 / (1 + math.exp(0.2)) / 2, rel=1e-12
    )
    for key in SEQUENCE_NAMES[2:]:
        assert policy[key].grad is None or (policy[key].grad == 0).all(), key


def test_sc_gradient_at_zero_delta_raises_a_and_lowers_b() -> None:
    policy = {
        key: torch.zeros(2, dtype=torch.float64, requires_grad=True) for key in SEQUENCE_NAMES
    }
    reference = {key: torch.zeros(2, dtype=torch.float64) for key in SEQUENCE_NAMES}
    beta_sc = t([0.025, 0.5])
    loss, metrics = sherlock_loss(
        policy, reference, t([0.1, 0.1]), beta_sc, dpo_coef=0.0, sc_coef=0.8
    )
    assert loss.item() == pytest.approx(0.8 * 2.0)  # (1 − 0)² twice per record
    assert metrics["rewards_sc_rejected/accuracies"] == 0.0  # margin 0 is not > 0
    loss.backward()
    # d/dA of 0.8·(1 − β·Δ)² / N at Δ = 0 is −2·0.8·β / N; B gets the opposite sign.
    expected = -2 * 0.8 * beta_sc / 2
    for side in ("l", "w"):
        for a in ("A1", "A2"):
            torch.testing.assert_close(policy[f"{side}_{a}"].grad, expected)
        for b in ("B1", "B2"):
            torch.testing.assert_close(policy[f"{side}_{b}"].grad, -expected)
    assert (policy["direct_w"].grad == 0).all()


def test_reference_never_gets_gradient() -> None:
    policy = tensors(POLICY, grad=True)
    reference = tensors(REFERENCE, grad=True)
    loss, _ = sherlock_loss(policy, reference, t(BETA_DPO), t(BETA_SC))
    loss.backward()
    assert all(value.grad is None for value in reference.values())


def test_sft_term_per_record_and_scalar() -> None:
    base, _ = sherlock_loss(tensors(POLICY), tensors(REFERENCE), t(BETA_DPO), t(BETA_SC))
    loss, metrics = sherlock_loss(
        tensors(POLICY),
        tensors(REFERENCE),
        t(BETA_DPO),
        t(BETA_SC),
        sft_coef=0.5,
        policy_mean_nll=t([2.0, 4.0]),
    )
    assert loss.item() == pytest.approx(base.item() + 0.5 * (2.0 + 4.0) / 2, rel=1e-12)
    assert metrics["loss/sft"] == pytest.approx(3.0)
    scalar, _ = sherlock_loss(
        tensors(POLICY),
        tensors(REFERENCE),
        t(BETA_DPO),
        t(BETA_SC),
        sft_coef=0.5,
        policy_mean_nll=torch.tensor(3.0, dtype=torch.float64),
    )
    assert scalar.item() == pytest.approx(loss.item(), rel=1e-12)
    # The NLL's gradient reaches the policy through policy_mean_nll.
    nll = torch.tensor([2.0, 4.0], dtype=torch.float64, requires_grad=True)
    with_grad, _ = sherlock_loss(
        tensors(POLICY),
        tensors(REFERENCE),
        t(BETA_DPO),
        t(BETA_SC),
        sft_coef=0.5,
        policy_mean_nll=nll,
    )
    with_grad.backward()
    torch.testing.assert_close(nll.grad, t([0.25, 0.25]))


def test_sft_needs_mean_nll() -> None:
    with pytest.raises(ValueError, match="policy_mean_nll"):
        sherlock_loss(tensors(POLICY), tensors(REFERENCE), t(BETA_DPO), t(BETA_SC), sft_coef=0.1)


@pytest.mark.parametrize("which", ["policy", "reference"])
def test_missing_and_extra_sequences_raise(which: str) -> None:
    tables = {"policy": tensors(POLICY), "reference": tensors(REFERENCE)}
    del tables[which]["l_B2"]
    with pytest.raises(ValueError, match="l_B2"):
        sherlock_loss(tables["policy"], tables["reference"], t(BETA_DPO), t(BETA_SC))
    tables = {"policy": tensors(POLICY), "reference": tensors(REFERENCE)}
    tables[which]["w_C3"] = t([0.0, 0.0])
    with pytest.raises(ValueError, match="w_C3"):
        sherlock_loss(tables["policy"], tables["reference"], t(BETA_DPO), t(BETA_SC))


def test_mismatched_lengths_raise() -> None:
    policy = tensors(POLICY)
    policy["w_A2"] = t([0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="w_A2"):
        sherlock_loss(policy, tensors(REFERENCE), t(BETA_DPO), t(BETA_SC))
    reference = {key: value[:1] for key, value in tensors(REFERENCE).items()}
    with pytest.raises(ValueError, match="reference"):
        sherlock_loss(tensors(POLICY), reference, t(BETA_DPO), t(BETA_SC))
    with pytest.raises(ValueError, match="beta_dpo"):
        sherlock_loss(tensors(POLICY), tensors(REFERENCE), t([0.1, 0.1, 0.1]), t(BETA_SC))
    with pytest.raises(ValueError, match="beta_sc"):
        sherlock_loss(tensors(POLICY), tensors(REFERENCE), t(BETA_DPO), t([0.1]))
    with pytest.raises(ValueError, match="policy_mean_nll"):
        sherlock_loss(
            tensors(POLICY),
            tensors(REFERENCE),
            t(BETA_DPO),
            t(BETA_SC),
            sft_coef=1.0,
            policy_mean_nll=t([1.0, 2.0, 3.0]),
        )
    policy = tensors(POLICY)
    policy["direct_w"] = policy["direct_w"].reshape(2, 1)
    with pytest.raises(ValueError, match="direct_w"):
        sherlock_loss(policy, tensors(REFERENCE), t(BETA_DPO), t(BETA_SC))


def test_empty_batch_raises() -> None:
    empty = {key: t([]) for key in SEQUENCE_NAMES}
    with pytest.raises(ValueError, match="empty"):
        sherlock_loss(empty, dict(empty), t([]), t([]))


def test_chosen_nll_is_the_sum_of_five_per_sequence_means() -> None:
    from sherlock.preference.losses import CHOSEN_TARGETS, chosen_nll

    assert CHOSEN_TARGETS == ("direct_w", "l_A1", "l_A2", "w_A1", "w_A2")
    counts = {
        "direct_w": [5, 8],
        "l_A1": [2, 7],
        "l_A2": [4, 3],
        "w_A1": [1, 4],
        "w_A2": [4, 12],
    }
    # Record 1: 10/5 + 5/2 + 4/4 + 1/1 + 2/4 = 2 + 2.5 + 1 + 1 + 0.5 = 7.0
    # Record 2: 20/8 + 7/7 + 3/3 + 2/4 + 6/12 = 2.5 + 1 + 1 + 0.5 + 0.5 = 5.5
    nll = chosen_nll(tensors(POLICY), {k: torch.tensor(v) for k, v in counts.items()})
    torch.testing.assert_close(nll, t([7.0, 5.5]), rtol=0, atol=1e-15)
    # The pooled mean the trainer used before: Σℓ / Σn = 22/16 and 38/34, i.e. not 1/5 of the
    # above unless the five lengths are equal.
    equal = {k: torch.tensor([4, 4]) for k in counts}
    pooled = -sum(t(POLICY[k]) for k in CHOSEN_TARGETS) / (5 * 4)
    torch.testing.assert_close(chosen_nll(tensors(POLICY), equal), 5 * pooled)
    # Its gradient: −1/n(t) on each chosen target, nothing on the others.
    policy = tensors(POLICY, grad=True)
    chosen_nll(policy, {k: torch.tensor(v) for k, v in counts.items()}).sum().backward()
    for name in SEQUENCE_NAMES:
        if name in counts:
            torch.testing.assert_close(policy[name].grad, -1 / t(counts[name]))
        else:
            assert policy[name].grad is None
    with pytest.raises(ValueError, match="w_A2"):
        chosen_nll(tensors(POLICY), {k: torch.tensor(v) for k, v in counts.items() if k != "w_A2"})
    with pytest.raises(ValueError, match="l_A1"):
        chosen_nll(tensors(POLICY), {**equal, "l_A1": torch.tensor([0, 3])})
