"""Scoring model responses against known answers: exact match and multiple choice."""

from __future__ import annotations

import pytest

from sherlock.evaluation.benchmark_files import BenchmarkItem
from sherlock.evaluation.scoring import (
    CORRECT,
    NO_CONCLUSION,
    NO_OPTION,
    WRONG,
    chosen_option,
    exact_match,
    score_response,
)

CHOICES = ("cat", "dog", "red circle", "3")


def respond(conclusion: str) -> str:
    return (
        "<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION><REASONING>r</REASONING>"
        f"<CONCLUSION>{conclusion}</CONCLUSION>"
    )


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("blue", "blue", True),
        ("  Blue.", "blue", True),  # case, spaces and a trailing full stop do not count
        ("light  blue", "Light blue", True),
        ("3", "3.0", True),  # equal as numbers
        ("1,000", "1000", True),
        ("blue", "red", False),
        ("3", "three", False),  # no number words: exact means exact
        ("the answer is blue", "blue", False),
        ("", "blue", False),
    ],
)
def test_exact_match(prediction: str, answer: str, expected: bool) -> None:
    assert exact_match(prediction, answer) is expected


@pytest.mark.parametrize(
    ("conclusion", "letter"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B) dog", "B"),
        ("C: red circle", "C"),
        ("The answer is B.", "B"),
        ("Answer: (C)", "C"),
        ("option D", "D"),
        ("dog", "B"),  # the text of exactly one option
        ("Red Circle.", "C"),
        ("3", "D"),
        # names nothing, or more than one option, or a letter beyond the options
        ("A red circle", None),  # "A" is an article here, not an option
        ("I think A or B", None),
        ("E", None),
        ("the answer is b", None),  # option letters are capitals
        ("a horse", None),
        ("", None),
    ],
)
def test_chosen_option(conclusion: str, letter: str | None) -> None:
    assert chosen_option(conclusion, CHOICES) == letter


def test_multiple_choice_scoring_statuses() -> None:
    item = BenchmarkItem("q", "q.png", "What animal?", "B", CHOICES)
    assert score_response(item, respond("B")).status == CORRECT
    assert score_response(item, respond("dog")).prediction == "B"
    wrong = score_response(item, respond("A"))
    assert (wrong.status, wrong.prediction, wrong.correct) == (WRONG, "A", False)
    assert score_response(item, respond("a horse")).status == NO_OPTION
    # malformed outputs: no CONCLUSION at all, or one that is never closed
    assert score_response(item, "<SUMMARY>s</SUMMARY> B").status == NO_CONCLUSION
    assert score_response(item, "<CONCLUSION>B").status == NO_CONCLUSION
    assert score_response(item, "").status == NO_CONCLUSION


def test_exact_match_scoring_reads_the_first_conclusion_only() -> None:
    item = BenchmarkItem("q", "q.png", "What colour?", "blue")
    assert score_response(item, respond("Blue")).correct
    assert score_response(item, respond("red")).status == WRONG
    both = respond("red") + "<CONCLUSION>blue</CONCLUSION>"
    assert score_response(item, both).prediction == "red"
    # an answer outside the CONCLUSION does not count
    assert score_response(item, "blue").status == NO_CONCLUSION
