"""The self-correction SFT data of Stage I (docs/method.md §3, step 2)."""

from __future__ import annotations

from sherlock.data.prompts import refine_prompt
from sherlock.data.records import Record
from sherlock.data.response import extract_answer
from sherlock.data.sharegpt import sft_row


def sherlock_sft_rows(
    d_b: list[Record], first_answers: dict[str, str], refine_template: str, model: str
) -> list[dict]:
    """Two rows per D_B record: (x → Y*) and (REFINE(x, y0) → Y*), y0 being R0's own answer.

    The direct row keeps the turns before x of a record that has them (D_B written with
    ``source.multi_turn: whole``, as the authors' Stage I data kept a multi-turn record); the
    REFINE row is always one turn, on the last question. Every record of D_B must have an
    answer: a missing one is an error, never a dropped row.
    """
    missing = [r.id for r in d_b if r.id not in first_answers]
    if missing:
        raise ValueError(f"no R0 answer for {len(missing)} D_B records, e.g. {missing[:5]}")
    rows = []
    for record in d_b:
        y0 = first_answers[record.id]
        rows.append(
            sft_row(
                f"{record.id}/direct",
                record.question,
                record.answer,
                record.image,
                record.history,
                kind="direct",
                source_id=record.id,
            )
        )
        rows.append(
            sft_row(
                f"{record.id}/refine",
                refine_prompt(refine_template, record.question, y0),
                record.answer,
                record.image,
                kind="refine",
                source_id=record.id,
                initial_response=y0,
                initial_model=model,
            )
        )
    return rows


def answer_stats(d_b: list[Record], first_answers: dict[str, str]) -> dict[str, int]:
    """How R0 did on D_B: answers with a CONCLUSION, and answers matching the annotation."""
    with_conclusion = correct = 0
    for record in d_b:
        answer = extract_answer(first_answers[record.id])
        if answer is not None:
            with_conclusion += 1
            correct += answer.lower() == (extract_answer(record.answer) or "").lower()
    return {"records": len(d_b), "with_conclusion": with_conclusion, "correct": correct}
