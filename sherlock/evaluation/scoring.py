"""Scoring a model's response against a benchmark answer: multiple choice, yes/no or exact match
(open answers are judged afterwards: ``sherlock.evaluation.open_answers``).

The answer is read (``sherlock.evaluation.answers``) from the text ``answer_from`` selects: the
first closed CONCLUSION (``conclusion``), the whole response (``response``), or the CONCLUSION
when there is one and the whole response otherwise (``auto``). With ``conclusion`` a response
without one scores as wrong with status ``no_conclusion``; a multiple-choice answer that names
no option, or a yes/no answer that says neither or both, scores as wrong with status
``no_option``. Both are counted, so a model that breaks the format or gives no answer is told
apart from one that answers wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from sherlock.evaluation.answers import (
    AUTO,
    answer_text,
    exact_match,
    read_exact,
    read_open_as_choice,
    read_option,
    read_yes_no,
)
from sherlock.evaluation.benchmark_files import YES_NO, BenchmarkItem

CORRECT = "correct"
WRONG = "wrong"
NO_CONCLUSION = "no_conclusion"
NO_OPTION = "no_option"
STATUSES = (CORRECT, WRONG, NO_CONCLUSION, NO_OPTION)

__all__ = ["CORRECT", "WRONG", "NO_CONCLUSION", "NO_OPTION", "STATUSES", "Score", "exact_match",
           "score_response"]  # fmt: skip


@dataclass(frozen=True)
class Score:
    prediction: str | None  # the option letter, Yes/No, or the text read
    status: str

    @property
    def correct(self) -> bool:
        return self.status == CORRECT


def score_response(
    item: BenchmarkItem, response: str, answer_from: str = AUTO, open_as_choice: bool = False
) -> Score:
    """How one response answers one item. ``open_as_choice``: an item without options is read
    as VLMEvalKit reads MMMU's open questions (its answer against "Other Answers")."""
    text = answer_text(response, answer_from)
    if text is None:
        return Score(None, NO_CONCLUSION)
    if item.answer_kind == YES_NO:
        said = read_yes_no(text)
        if said is None:
            return Score(None, NO_OPTION)
        return Score(said, CORRECT if said.lower() == item.answer.lower() else WRONG)
    if item.multiple_choice:
        letter = read_option(text, item.choices)
        if letter is None:
            return Score(None, NO_OPTION)
        return Score(letter, CORRECT if letter == item.answer else WRONG)
    read = read_open_as_choice if open_as_choice else read_exact
    return Score(text.strip(), CORRECT if read(text, item.answer) else WRONG)
