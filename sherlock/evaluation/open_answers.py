"""Open answers (MathVista, MMVet) scored through an answer-extracting judge model.

VLMEvalKit scores these benchmarks with a GPT judge: for MathVista GPT extracts the answer and
rules compare it, for MMVet GPT grades each answer from 0 to 1. Here a local text model (run on
the generation backend, as ``online.judge`` is) reads the question and the answer's text (the
CONCLUSION, or the whole response as ``evaluation.answer_from`` says) and writes the bare
answer (``answer_extraction`` prompt); rules then compare it with the reference:

* numbers (MathVista's ``answer_type`` integer/float) are equal after rounding to the row's
  ``precision`` (default: exact);
* a letter naming one of the row's ``choices`` (MathVista's multi-choice list) stands for it;
* MMVet's ``<AND>`` answers need every part in the extracted answer, ``<OR>`` answers any one;
* anything else: equal after normalising case, spaces and a trailing full stop.

So the verdicts are right or wrong (no partial credit), and the judge is not GPT: these scores
are close to, not equal to, VLMEvalKit's (docs/evaluation.md).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from typing import Any

from sherlock.data.response import normalise_answer
from sherlock.evaluation.answers import AUTO, answer_text, exact_match
from sherlock.evaluation.benchmark_files import LETTERS, OPEN
from sherlock.evaluation.scoring import CORRECT, NO_CONCLUSION, NO_OPTION, WRONG

_SLOTS = ("{question}", "{answer}")
_SLOT = re.compile("|".join(re.escape(slot) for slot in _SLOTS))
NO_ANSWER = "NONE"


def extraction_prompt(template: str, question: str, answer: str) -> str:
    """The extraction prompt filled in one pass (answers may contain braces or slot names)."""
    for slot in _SLOTS:
        if slot not in template:
            raise ValueError(f"the answer-extraction prompt has no {slot} slot")
    values = dict(zip(_SLOTS, (question, answer), strict=True))
    return _SLOT.sub(lambda match: values[match.group(0)], template)


def extracted(reply: str) -> str | None:
    """The judge's answer: its first non-empty line, without quotes; None for NONE or nothing."""
    line = next((text.strip() for text in reply.splitlines() if text.strip()), "")
    line = line.strip("\"'` ")
    if line.lower().startswith("extracted answer:"):
        line = line.split(":", 1)[1].strip()
    return None if not line or line.upper().rstrip(".") == NO_ANSWER else line


def _number(text: str) -> float | None:
    match = re.fullmatch(r"\s*[-+]?\d[\d,]*(?:\.\d+)?\s*%?\s*|\s*[-+]?\.\d+\s*", text)
    if not match:
        return None
    return float(text.replace(",", "").replace("%", "").strip())


def _listed_choices(columns: dict[str, str]) -> list[str]:
    raw = columns.get("choices", "")
    if not raw.startswith("["):
        return []
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def matches(answer: str, reference: str, columns: dict[str, str]) -> bool:
    """Whether an extracted answer equals the reference, by the rules in the module docstring."""
    choices = _listed_choices(columns)
    letter = answer.strip().strip("()").upper()
    if choices and len(letter) == 1 and letter in LETTERS[: len(choices)]:
        answer = choices[LETTERS.index(letter)]
    if columns.get("answer_type") in ("integer", "float"):
        left, right = _number(answer), _number(reference)
        if left is not None and right is not None:
            precision = columns.get("precision", "")
            if precision.replace(".", "", 1).isdigit():
                digits = int(float(precision))
                return round(left, digits) == round(right, digits)
            return left == right
    if "<AND>" in reference:
        said = normalise_answer(answer)
        return all(normalise_answer(part) in said for part in reference.split("<AND>"))
    if "<OR>" in reference:
        return any(exact_match(answer, part) for part in reference.split("<OR>"))
    return exact_match(answer, reference)


def judge_rows(
    rows: Sequence[dict[str, Any]],
    template: str,
    generate_text: Callable[[list[str]], list[str]],
    answer_from: str = AUTO,
) -> list[dict[str, Any]]:
    """Rows with the open items' statuses re-decided by the judge (every turn in one batched
    call) and each judged answer in ``judged``; other items keep their statuses. The judge
    reads the text ``answer_from`` selects (``answers.answer_text``)."""
    asks: list[tuple[int, int]] = []
    prompts: list[str] = []
    for r, row in enumerate(rows):
        if row.get("kind") != OPEN:
            continue
        for turn, response in enumerate(row["turns"]):
            text = answer_text(response, answer_from)
            if text is not None:
                asks.append((r, turn))
                prompts.append(extraction_prompt(template, row["question"], text))
    replies = generate_text(prompts) if prompts else []
    if len(replies) != len(prompts):
        raise RuntimeError(f"the judge answered {len(replies)} of {len(prompts)} prompts")
    out = [
        {**row, "judged": [None] * len(row["turns"]), "statuses": list(row["statuses"])}
        for row in rows
    ]
    for (r, turn), reply in zip(asks, replies, strict=True):
        row = out[r]
        answer = extracted(reply)
        row["judged"][turn] = answer
        columns = row.get("meta", {}).get("columns", {})
        if answer is None:
            row["statuses"][turn] = NO_OPTION
        else:
            right = matches(answer, row["answer"], columns)
            row["statuses"][turn] = CORRECT if right else WRONG
    for row in out:
        if row.get("kind") == OPEN:
            for turn, response in enumerate(row["turns"]):
                if answer_text(response, answer_from) is None:
                    row["statuses"][turn] = NO_CONCLUSION
    return out
