"""Stage III data (docs/method.md §7): candidates by self-correction, chosen by self-consistency.

Candidates: M_{k−1} answers each pool question (y0), then corrects itself three times,
y_t = generate(REFINE(x, y_{t−1})); each turn is one batched generation over all items.
Chosen: an item is kept when the answers of y1, y2 and y3 are judged equivalent; chosen = y3 and
the rejected response will continue the head of y0. Every item not kept is counted with its
reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from sherlock.data.records import Record
from sherlock.data.response import extract_answer, parse_stages
from sherlock.generation import GenerationBackend, SamplingParams
from sherlock.generation.self_correct import Question, self_correct
from sherlock.online.judge import JudgeItem

CORRECTION_TURNS = 3


def generate_candidates(
    backend: GenerationBackend,
    items: Sequence[Record],
    refine_template: str,
    sampling: SamplingParams,
    provenance: dict[str, Any],
) -> list[dict[str, Any]]:
    """y0 … y3 for every item; each turn is one batched call (sherlock.generation.self_correct)."""
    questions = [Question(item.id, item.image, item.question) for item in items]
    histories = self_correct(backend, questions, refine_template, sampling, CORRECTION_TURNS)
    return [
        {
            "id": item.id,
            "question": item.question,
            "images": [item.image],
            "turns": history,
            "answers": [extract_answer(response) for response in history],
            **provenance,
        }
        for item, history in zip(items, histories, strict=True)
    ]


def screen(candidate: dict[str, Any]) -> str | None:
    """Why a candidate cannot become a pair before any judging, or None when it can."""
    turns = candidate["turns"]
    for turn in range(1, CORRECTION_TURNS + 1):
        if extract_answer(turns[turn]) is None:
            return f"turn {turn} has no CONCLUSION"
    if parse_stages(turns[CORRECTION_TURNS]) is None:
        return "y3 (the chosen response) is not in the four-stage format"
    if parse_stages(turns[0]) is None:
        return "y0 is not in the four-stage format (its head cannot be cut)"
    return None


def judge_item(candidate: dict[str, Any]) -> JudgeItem:
    answers = candidate["answers"][1 : CORRECTION_TURNS + 1]
    return JudgeItem(candidate["question"], tuple(answers))


def select_chosen(
    candidates: Sequence[dict[str, Any]],
    judge: Callable[[list[JudgeItem]], list[bool]],
    target: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The candidates kept (in pool order, up to ``target``) and a summary of why others were not.

    ``judge`` is called once, on every candidate that passed the screen.
    """
    reasons: Counter[str] = Counter()
    screened = []
    for candidate in candidates:
        reason = screen(candidate)
        if reason is None:
            screened.append(candidate)
        else:
            reasons[reason] += 1
    verdicts = judge([judge_item(c) for c in screened]) if screened else []
    kept = []
    for candidate, equivalent in zip(screened, verdicts, strict=True):
        if not equivalent:
            reasons["turns 1-3 judged not equivalent"] += 1
        elif len(kept) >= target:
            reasons["beyond the target count"] += 1
        else:
            kept.append(candidate)
    summary = {
        "candidates": len(candidates),
        "kept": len(kept),
        "acceptance_rate": round(len(kept) / len(candidates), 4) if candidates else 0.0,
        "judged": len(screened),
        "judged_equivalent": sum(verdicts),
        "not_kept": dict(sorted(reasons.items())),
    }
    assert summary["kept"] + sum(reasons.values()) == len(candidates)  # nothing vanishes
    return kept, summary


def shortfall_warning(kept: int, target: int, candidates: int) -> str | None:
    """A warning when fewer than ``target`` items were kept, with the pool that would have
    reached it at this iteration's acceptance rate; None when the target was reached."""
    if kept >= target:
        return None
    text = f"kept {kept} of the {target} pairs online.target_pairs asks for"
    if kept:
        needed = -(-target * candidates // kept)  # the pool at this acceptance rate
        return (
            f"{text} ({kept}/{candidates} accepted): about {needed} pool items per iteration "
            "would reach it; raise splits.pool"
        )
    return f"{text}: none of the {candidates} candidates was accepted"
