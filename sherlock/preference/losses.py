"""The Sherlock preference objective (docs/method.md §6), as a pure function of log-probabilities.

The trainer computes, for every record, the summed target log-probability of ten sequences
under the policy and under the frozen reference; everything after that lives here, so the
mathematics can be checked by hand without a model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

# docs/method.md §6 naming: the direct pair, then the four refine pairs under context
# C_l = REFINE(x, Y_l) and the four under C_w = REFINE(x, Y_w).
SEQUENCE_NAMES: tuple[str, ...] = (
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

# The sequences whose target is the preferred text: Y_w itself, and s_w after p_w or p_l under
# both REFINE contexts. γ's NLL covers these five, as the authors' trainer does; it also keeps the
# model fluent at answering REFINE prompts, which Stage III asks of it.
CHOSEN_TARGETS: tuple[str, ...] = ("direct_w", "l_A1", "l_A2", "w_A1", "w_A2")


def _check_logps(name: str, table: Mapping[str, torch.Tensor]) -> int:
    """The batch size of one table of log-probs; ValueError naming any bad key."""
    missing = [key for key in SEQUENCE_NAMES if key not in table]
    if missing:
        raise ValueError(f"{name} log-probs lack the sequence(s) {missing}")
    extra = sorted(set(table) - set(SEQUENCE_NAMES))
    if extra:
        raise ValueError(
            f"{name} log-probs have unknown sequence(s) {extra}; expected exactly {SEQUENCE_NAMES}"
        )
    size = None
    for key in SEQUENCE_NAMES:
        value = table[key]
        if not isinstance(value, torch.Tensor) or value.dim() != 1:
            raise ValueError(f"{name}[{key!r}] must be a 1-D tensor (one entry per record)")
        if size is None:
            size = value.shape[0]
        elif value.shape[0] != size:
            raise ValueError(
                f"{name}[{key!r}] has {value.shape[0]} records, {SEQUENCE_NAMES[0]!r} has {size}"
            )
    assert size is not None
    return size


def _per_record(name: str, value: torch.Tensor, size: int, like: torch.Tensor) -> torch.Tensor:
    """A per-record (length ``size``) or scalar tensor, on the device and dtype of ``like``."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a tensor")
    if value.dim() > 1 or (value.dim() == 1 and value.shape[0] != size):
        raise ValueError(
            f"{name} must be a scalar or hold one entry per record ({size}), "
            f"got shape {tuple(value.shape)}"
        )
    return value.to(device=like.device, dtype=like.dtype)


def chosen_nll(
    policy: Mapping[str, torch.Tensor], n_tokens: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """γ's NLL per record: Σ over the five :data:`CHOSEN_TARGETS` of −ℓθ(t) / n(t).

    Each target's own token-mean NLL, then their sum, as the authors' trainer adds it (γ times
    the mean NLL of the direct chosen sequence plus that of the two chosen-suffix sequences under
    each REFINE context). ``policy`` holds the summed target log-probs, ``n_tokens`` the target
    token counts (labels that are not ignored), both per record. At equal lengths this is five
    times the mean over the pooled tokens of the five.
    """
    missing = [name for name in CHOSEN_TARGETS if name not in policy or name not in n_tokens]
    if missing:
        raise ValueError(f"the chosen-side NLL needs log-probs and token counts of {missing}")
    total = None
    for name in CHOSEN_TARGETS:
        logps = policy[name]
        count = n_tokens[name].to(device=logps.device, dtype=logps.dtype)
        if (count <= 0).any():
            raise ValueError(f"{name}: a record has no target tokens, so no mean NLL")
        term = -logps / count
        total = term if total is None else total + term
    assert total is not None
    return total


def sherlock_loss(
    policy: Mapping[str, torch.Tensor],
    reference: Mapping[str, torch.Tensor],
    beta_dpo: torch.Tensor,
    beta_sc: torch.Tensor,
    *,
    dpo_coef: float,
    sc_coef: float,
    sft_coef: float = 0.0,
    policy_mean_nll: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch-mean Sherlock loss and its TRL-style metrics.

    ``policy`` / ``reference`` map each of :data:`SEQUENCE_NAMES` to the summed target log-probs
    of every record. ``beta_dpo`` / ``beta_sc`` are the per-record coefficients that multiply Δ
    (the recipe, reference w·β or paper β_SC(i, ε), is resolved by the caller).
    ``policy_mean_nll`` (per record or scalar; the trainer passes :func:`chosen_nll`) is
    required when ``sft_coef`` > 0.
    """
    size = _check_logps("policy", policy)
    ref_size = _check_logps("reference", reference)
    if ref_size != size:
        raise ValueError(f"reference has {ref_size} records, policy has {size}")
    if size == 0:
        raise ValueError("empty batch: policy log-probs have no records")
    like = policy[SEQUENCE_NAMES[0]]
    beta_dpo = _per_record("beta_dpo", beta_dpo, size, like)
    beta_sc = _per_record("beta_sc", beta_sc, size, like)
    if sft_coef > 0 and policy_mean_nll is None:
        raise ValueError(
            f"sft_coef={sft_coef} > 0 needs policy_mean_nll "
            "(the chosen targets' NLL under the policy, chosen_nll)"
        )

    # The reference is frozen: never let a gradient reach it, even if the caller forgot no_grad.
    reference = {key: value.detach() for key, value in reference.items()}

    def ratio(key: str) -> torch.Tensor:
        """ℓθ(t) − ℓref(t): the implicit reward of one sequence before β."""
        return policy[key] - reference[key]

    def delta(a: str, b: str) -> torch.Tensor:
        # Δ(a, b) = [ℓθ(a) − ℓθ(b)] − [ℓref(a) − ℓref(b)]
        return ratio(a) - ratio(b)

    # L_dpo = −log σ(w·β·Δ((x, Y_w), (x, Y_l))); logsigmoid avoids overflow for large |Δ|.
    dpo_logits = beta_dpo * delta("direct_w", "direct_l")
    loss_dpo = -F.logsigmoid(dpo_logits)

    # L_ref,l = (1 − w·β_r·Δ(A1, B1) − w·β_r·Δ(A2, B2))², context C_l = REFINE(x, Y_l).
    sc_rejected = beta_sc * (delta("l_A1", "l_B1") + delta("l_A2", "l_B2"))
    loss_sc_rejected = (1 - sc_rejected) ** 2
    # L_ref,w: the same four pairs under context C_w = REFINE(x, Y_w).
    sc_chosen = beta_sc * (delta("w_A1", "w_B1") + delta("w_A2", "w_B2"))
    loss_sc_chosen = (1 - sc_chosen) ** 2

    # L = 0.2·L_dpo + 0.8·(L_ref,l + L_ref,w) (+ γ·NLL), per record, then the batch mean.
    per_record = dpo_coef * loss_dpo + sc_coef * (loss_sc_rejected + loss_sc_chosen)
    loss_sft = None
    if sft_coef > 0:
        assert policy_mean_nll is not None
        loss_sft = _per_record("policy_mean_nll", policy_mean_nll, size, like)
        per_record = per_record + sft_coef * loss_sft
    loss = per_record.mean()

    with torch.no_grad():
        chosen_rewards = beta_dpo * ratio("direct_w")
        rejected_rewards = beta_dpo * ratio("direct_l")
        metrics = {
            "loss/total": loss.item(),
            "loss/dpo": loss_dpo.mean().item(),
            "loss/sc_rejected": loss_sc_rejected.mean().item(),
            "loss/sc_chosen": loss_sc_chosen.mean().item(),
            "rewards/chosen": chosen_rewards.mean().item(),
            "rewards/rejected": rejected_rewards.mean().item(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
            "rewards_sc_rejected/margins": sc_rejected.mean().item(),
            "rewards_sc_rejected/accuracies": (sc_rejected > 0).float().mean().item(),
            "rewards_sc_chosen/margins": sc_chosen.mean().item(),
            "rewards_sc_chosen/accuracies": (sc_chosen > 0).float().mean().item(),
            "logps/chosen": policy["direct_w"].mean().item(),
            "logps/rejected": policy["direct_l"].mean().item(),
        }
        # Each refinement pair's rewards, as TRL logs chosen/rejected: β_sc·(ℓθ − ℓref) of its
        # chosen-suffix sequence (A) and its rejected-suffix sequence (B), beside the combined
        # margin above.
        for context, tag in (("l", "rewards_sc_rejected"), ("w", "rewards_sc_chosen")):
            for pair in ("1", "2"):
                chosen = beta_sc * ratio(f"{context}_A{pair}")
                rejected = beta_sc * ratio(f"{context}_B{pair}")
                metrics[f"{tag}/pair{pair}_chosen"] = chosen.mean().item()
                metrics[f"{tag}/pair{pair}_rejected"] = rejected.mean().item()
        if loss_sft is not None:
            metrics["loss/sft"] = loss_sft.mean().item()
    return loss, metrics
