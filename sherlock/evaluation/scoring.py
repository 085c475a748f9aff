"""Scoring a model's response against a benchmark answer: exact match, multiple choice or
yes/no (open answers are judged afterwards: ``sherlock.evaluation.open_answers``).

The prediction is the text of the response's first CONCLUSION (the four-stage format of
docs/method.md §1). A response without one scores as wrong with status ``no_conclusion``; a
multiple-choice conclusion that names no option, or a yes/no conclusion that says neither or
both, scores as wrong with status ``no_option``. Both are counted, so a model that breaks the
format is told apart from one that answers wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sherlock.data.response import extract_answer, normalise_answer
from sherlock.evaluation.benchmark_files import LETTERS, YES_NO, BenchmarkItem

CORRECT = "correct"
WRONG = "wrong"
NO_CONCLUSION = "no_conclusion"
NO_OPTION = "no_option"
STATUSES = (CORRECT, WRONG, NO_CONCLUSION, NO_OPTION)

# "B", "(B)", "B.", "B)", "B: text", "(B) text"; not "A red circle" (an article, not an option)
_LEADING_LETTER = re.compile(r"^(?:\(([A-Z])\)|([A-Z])(?:[.:)]|$))")
# "the answer is B", "Answer: (B)", "option B"
_NAMED_LETTER = re.compile(r"\b(?i:answer(?: is)?|option)\s*:?\s*\(?([A-Z])\)?(?![A-Za-z])")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Score:
    prediction: str | None  # the option letter (multiple choice) or the conclusion text
    status: str

    @property
    def correct(self) -> bool:
        return self.status == CORRECT


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def exact_match(prediction: str, answer: str) -> bool:
    """Equal after normalisation (case, spaces, trailing full stop), or equal as numbers."""
    left, right = normalise_answer(prediction), normalise_answer(answer)
    if left == right:
        return True
    a, b = _number(left), _number(right)
    return a is not None and b is not None and a == b


def chosen_option(conclusion: str, choices: tuple[str, ...]) -> str | None:
    """The option letter a conclusion names, or None when it names none (or several)."""
    valid = LETTERS[: len(choices)]
    text = conclusion.strip()
    match = _LEADING_LETTER.match(text)
    if match:
        letter = match.group(1) or match.group(2)
        if letter in valid:
            return letter
    named = {m.group(1) for m in _NAMED_LETTER.finditer(text) if m.group(1) in valid}
    if len(named) == 1:
        return named.pop()
    by_text = [LETTERS[i] for i, option in enumerate(choices) if exact_match(text, option)]
    return by_text[0] if len(by_text) == 1 else None


def yes_or_no(text: str) -> str | None:
    """"Yes" or "No" when the text says exactly one of the two words (VLMEvalKit's yes/no
    extraction: punctuation ignored, any case), else None."""
    words = set(_WORD.findall(text.lower()))
    if ("yes" in words) == ("no" in words):
        return None
    return "Yes" if "yes" in words else "No"


def score_response(item: BenchmarkItem, response: str) -> Score:
    """How one response answers one item."""
    conclusion = extract_answer(response)
    if conclusion is None:
        return Score(None, NO_CONCLUSION)
    if item.answer_kind == YES_NO:
        said = yes_or_no(conclusion)
        if said is None:
            return Score(None, NO_OPTION)
        return Score(said, CORRECT if said.lower() == item.answer.lower() else WRONG)
    if item.multiple_choice:
        letter = chosen_option(conclusion, item.choices)
        if letter is None:
            return Score(None, NO_OPTION)
        return Score(letter, CORRECT if letter == item.answer else WRONG)
    return Score(conclusion, CORRECT if exact_match(conclusion, item.answer) else WRONG)
