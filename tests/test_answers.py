"""Reading answers: the response-forms table (VLMEvalKit's verdicts, computed by running its own
functions, beside ours) and what ``answer_from`` reads."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest

from sherlock.evaluation.answers import (
    NONE_OF_THEM,
    answer_text,
    open_choice,
    read_option,
    read_yes_no,
    vlmevalkit_option,
    vlmevalkit_yes_no,
)
from sherlock.evaluation.benchmark_files import BenchmarkItem
from sherlock.evaluation.differences import pandas_reads_as_missing
from sherlock.evaluation.evaluate import score_turns, summarise
from sherlock.evaluation.scoring import CORRECT, NO_CONCLUSION, NO_OPTION, WRONG

TABLE = Path(__file__).parent / "data" / "answer_forms.tsv"
OPTIONS = tuple("ABCDE")
NONE = "none"


def forms() -> tuple[list[str], pd.DataFrame]:
    """The table's header lines and its rows, every cell as text."""
    lines = TABLE.read_text(encoding="utf-8").splitlines(keepends=True)
    header = [line for line in lines if line.startswith("#")]
    body = "".join(lines[len(header) :])
    return header, pd.read_csv(io.StringIO(body), sep="\t", dtype=str, keep_default_na=False)


def options(row: pd.Series) -> list[str]:
    return [row[c] for c in OPTIONS if row[c]]


def ours(row: pd.Series) -> str:
    text = row["response"]
    if row["kind"] == "yes_no":
        return read_yes_no(text) or NONE
    if row["kind"] == "open":
        return open_choice(text, row["answer"]) or NONE
    return read_option(text, options(row)) or NONE


def right(row: pd.Series, reading: str) -> bool:
    """An open question is right when option A (the answer) is read."""
    return reading == ("A" if row["kind"] == "open" else row["answer"])


def test_the_forms_table_is_large_and_names_its_vlmevalkit_commit() -> None:
    header, table = forms()
    assert len(table) >= 60
    assert table["kind"].value_counts().to_dict().keys() == {"mcq", "yes_no", "open"}
    assert min(table["kind"].value_counts()) >= 10
    commits = [re.fullmatch(r"# VLMEvalKit commit: ([0-9a-f]{40})\n", line) for line in header]
    assert sum(bool(m) for m in commits) == 1
    assert "benchmarks/vlmevalkit_verdicts.py" in "".join(header)


def test_we_read_right_wherever_vlmevalkit_does_and_say_why_where_only_we_do() -> None:
    _, table = forms()
    both = only_ours = 0
    for _, row in table.iterrows():
        read = ours(row)
        where = f"{row['form']!r}: {row['response']!r}"
        assert read == row["ours"], f"{where}: the table says we read {row['ours']}, we read {read}"
        if right(row, row["vlmevalkit"]):
            assert right(row, read), f"{where}: VLMEvalKit reads it right, we read {read}"
            both += 1
        elif right(row, read):
            assert row["why"], f"{where}: only we read it right, and the table does not say why"
            only_ours += 1
        else:
            assert not row["why"], f"{where}: a why on a row we do not read right"
    # the table shows both directions: forms VLMEvalKit reads, forms only we read
    assert both >= 30 and only_ours >= 15


def test_our_copy_of_vlmevalkits_rules_gives_its_stored_verdicts() -> None:
    """VLMEvalKit's reading, written again in sherlock.evaluation.answers, against the verdicts
    its own code gave (options as pandas, its reader, sees them: "None" is missing)."""
    _, table = forms()
    for _, row in table.iterrows():
        text = row["response"]
        if row["kind"] == "yes_no":
            read = vlmevalkit_yes_no(text)
        else:
            choices = (
                (row["answer"], "Other Answers")
                if row["kind"] == "open"
                else [row[c] for c in OPTIONS if row[c] and not pandas_reads_as_missing(row[c])]
            )
            read = vlmevalkit_option(text, choices)
        assert (read or NONE) == row["vlmevalkit"], f"{row['form']!r}: {text!r}"


def test_vlmevalkits_word_rule_is_unicode_aware_and_ours_reads_markup() -> None:
    assert read_yes_no("Yes, Noël is in the picture.") == "Yes"  # Noël is one word
    assert read_yes_no("Nöel ist da, yes") == "Yes"
    assert vlmevalkit_yes_no("**No**") is None and read_yes_no("**No**") == "No"
    assert read_yes_no("Yes.\n\nNo other objects.") is None  # both words: none, never a guess
    assert vlmevalkit_option("Sorry, I can't help with images of people yet.", ["a", "b"]) == (
        NONE_OF_THEM
    )
    assert read_option("Sorry, I can't help with images of people yet.", ["a", "b"]) is None


FOUR_STAGES = "<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION><REASONING>r</REASONING>"


@pytest.mark.parametrize(
    ("response", "conclusion", "response_mode", "auto"),
    [
        # a closed CONCLUSION: conclusion and auto read it; response reads everything
        (FOUR_STAGES + "<CONCLUSION>B</CONCLUSION>", "B", None, "B"),
        # no format at all: only conclusion finds nothing
        ("B", None, "B", "B"),
        ("The answer is B.", None, "The answer is B.", "The answer is B."),
        # an unclosed CONCLUSION is no CONCLUSION
        ("<CONCLUSION>B", None, "<CONCLUSION>B", "<CONCLUSION>B"),
    ],
)
def test_answer_from_selects_the_text_read(response, conclusion, response_mode, auto) -> None:
    assert answer_text(response, "conclusion") == conclusion
    assert answer_text(response, "response") == (response_mode or response)
    assert answer_text(response, "auto") == auto
    with pytest.raises(ValueError, match="answer_from"):
        answer_text(response, "whole")


def test_the_three_modes_score_the_same_responses() -> None:
    """One multiple-choice and one yes/no item, each answered in four ways, scored three ways:
    statuses counted by hand."""
    mcq = BenchmarkItem("m", "m.png", "Colour?", "B", ("red", "green", "blue"))
    yes_no = BenchmarkItem("y", "y.png", "Is it round?", "Yes", kind="yes_no")
    mcq_turns = [
        FOUR_STAGES + "<CONCLUSION>B</CONCLUSION>",  # the format, right
        "The answer is B.",  # no format, right
        FOUR_STAGES + "<CONCLUSION>A</CONCLUSION>",  # the format, wrong
        "I am not sure.",  # no format, no option
    ]
    yes_no_turns = [
        FOUR_STAGES + "<CONCLUSION>Yes</CONCLUSION>",
        "**Yes**, it is round.",
        "<SUMMARY>s</SUMMARY> No",  # broken format, says No
        FOUR_STAGES + "<CONCLUSION>Maybe</CONCLUSION>",
    ]
    statuses = {}
    for mode in ("conclusion", "response", "auto"):
        rows = [
            score_turns(mcq, mcq_turns, answer_from=mode),
            score_turns(yes_no, yes_no_turns, answer_from=mode),
        ]
        statuses[mode] = [row["statuses"] for row in rows]
        summary = summarise(rows, rounds=3, answer_from=mode)
        assert summary["answer_from"] == mode
        # the share of responses without the four-stage format does not depend on the mode
        assert [t["no_format"] for t in summary["turns"]] == [0.0, 1.0, 0.5, 0.5]
    assert statuses["conclusion"] == [
        [CORRECT, NO_CONCLUSION, WRONG, NO_CONCLUSION],
        [CORRECT, NO_CONCLUSION, NO_CONCLUSION, NO_OPTION],
    ]
    # the whole four-stage response: the letters of the tags are no option; "s c r" no yes/no
    assert statuses["response"] == [
        [CORRECT, CORRECT, WRONG, NO_OPTION],
        [CORRECT, CORRECT, WRONG, NO_OPTION],
    ]
    assert statuses["auto"] == [
        [CORRECT, CORRECT, WRONG, NO_OPTION],
        [CORRECT, CORRECT, WRONG, NO_OPTION],
    ]

