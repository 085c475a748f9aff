"""Scoring model responses against known answers: exact match, multiple choice and yes/no, the
answer read from the CONCLUSION or the whole response (tests/test_answers.py: every form)."""

from __future__ import annotations

import pytest

from sherlock.evaluation.answers import read_exact, read_option
from sherlock.evaluation.benchmark_files import BenchmarkItem
from sherlock.evaluation.scoring import (
    CORRECT,
    NO_CONCLUSION,
    NO_OPTION,
    WRONG,
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
    ("text", "expected"),
    [
        ("The answer is blue.", True),  # a lead-in and markup are not the answer
        ("**Blue**", True),
        ("Final answer: blue", True),
        ("The answer is light blue.", False),
        ("blue or red", False),
    ],
)
def test_free_form_answers_are_read_without_lead_in_and_markup(text: str, expected: bool) -> None:
    assert read_exact(text, "blue") is expected


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
        ("the answer is b", "B"),  # VLMEvalKit's answer-is pattern takes any case
        ("A red circle", "A"),  # VLMEvalKit reads the article as option A: so do we
        # names nothing, or more than one option, or a letter beyond the options
        ("I think A or B", None),
        ("E", None),
        ("a horse", None),
        ("", None),
    ],
)
def test_read_option(conclusion: str, letter: str | None) -> None:
    assert read_option(conclusion, CHOICES) == letter


def test_multiple_choice_scoring_statuses() -> None:
    item = BenchmarkItem("q", "q.png", "What animal?", "B", CHOICES)
    assert score_response(item, respond("B")).status == CORRECT
    assert score_response(item, respond("dog")).prediction == "B"
    wrong = score_response(item, respond("A"))
    assert (wrong.status, wrong.prediction, wrong.correct) == (WRONG, "A", False)
    assert score_response(item, respond("a horse")).status == NO_OPTION
    # malformed outputs: no CONCLUSION at all, or one that is never closed; read as a whole
    # (auto, the default) their answer counts, read for a CONCLUSION only they have none
    for broken in ("<SUMMARY>s</SUMMARY> B", "<CONCLUSION>B"):
        assert score_response(item, broken).status == CORRECT
        assert score_response(item, broken, "conclusion").status == NO_CONCLUSION
    assert score_response(item, "", "conclusion").status == NO_CONCLUSION
    assert score_response(item, "").status == NO_OPTION


def test_exact_match_scoring_reads_the_first_conclusion_only() -> None:
    item = BenchmarkItem("q", "q.png", "What colour?", "blue")
    assert score_response(item, respond("Blue")).correct
    assert score_response(item, respond("red")).status == WRONG
    both = respond("red") + "<CONCLUSION>blue</CONCLUSION>"
    assert score_response(item, both).prediction == "red"
    # an answer outside the CONCLUSION counts only where there is none (auto) or everything is
    # read (response)
    assert score_response(item, "blue", "conclusion").status == NO_CONCLUSION
    assert score_response(item, "blue").correct
    assert score_response(item, respond("red") + " blue", "response").status == WRONG


def test_mmmu_open_questions_are_read_as_vlmevalkit_reads_them() -> None:
    item = BenchmarkItem("q", "q.png", "How many?", "42")
    assert score_response(item, respond("The answer is 42."), open_as_choice=True).correct
    # VLMEvalKit reads a lone "A" as its option A, the answer: so do we
    assert score_response(item, respond("A"), open_as_choice=True).correct
    assert not score_response(item, respond("A"), open_as_choice=False).correct
    assert not score_response(item, respond("41"), open_as_choice=True).correct
