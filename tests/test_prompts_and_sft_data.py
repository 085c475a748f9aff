from pathlib import Path

import pytest

from sherlock.prompts import load_prompt, refine_prompt
from sherlock.records import Record
from sherlock.sft_data import answer_stats, sherlock_sft_rows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "sherlock" / "prompts"


def test_published_prompts_are_shipped_unchanged():
    for name in ("refine", "consistency_judge"):
        shipped = load_prompt(name)
        published = SHARED / f"{name}.txt"
        if published.exists():  # the shared folder sits beside the checkout here and in CI
            assert shipped == published.read_text(encoding="utf-8")
        assert len(shipped) > 100


def test_refine_fills_both_slots_once_and_keeps_braces():
    template = "Q: {Question}\nR: {Example_Response}\nEnd"
    filled = refine_prompt(template, "What is {Example_Response}?", "<SUMMARY>{x}</SUMMARY>")
    assert filled == "Q: What is {Example_Response}?\nR: <SUMMARY>{x}</SUMMARY>\nEnd"
    with pytest.raises(ValueError, match="Question"):
        refine_prompt("no slots {Example_Response}", "q", "r")


def test_override_prompt_file(tmp_path):
    custom = tmp_path / "refine.txt"
    custom.write_text("Fix: {Question} / {Example_Response}")
    assert load_prompt("refine", str(custom)).startswith("Fix:")


def test_sherlock_sft_rows_two_per_record_refine_from_r0():
    answer = (
        "<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION><REASONING>r</REASONING>"
        "<CONCLUSION>red</CONCLUSION>"
    )
    d_b = [Record("a", "a.png", "What colour?", answer), Record("b", "b.png", "Shape?", answer)]
    y0 = {"a": "<SUMMARY>x</SUMMARY><CONCLUSION>blue</CONCLUSION>", "b": "garbage"}
    rows = sherlock_sft_rows(d_b, y0, "Q={Question} R={Example_Response}", model="r0")
    assert len(rows) == 4
    direct, refine = rows[0], rows[1]
    assert direct["conversations"][0]["value"] == "<image>What colour?"
    assert direct["conversations"][1]["value"] == answer
    assert refine["conversations"][0]["value"] == "<image>Q=What colour? R=" + y0["a"]
    assert refine["conversations"][1]["value"] == answer  # the target is always Y*
    assert refine["images"] == ["a.png"] and refine["kind"] == "refine"
    assert [r["kind"] for r in rows] == ["direct", "refine", "direct", "refine"]
    assert answer_stats(d_b, y0) == {"records": 2, "with_conclusion": 1, "correct": 0}
    with pytest.raises(ValueError, match="no R0 answer"):
        sherlock_sft_rows(d_b, {"a": "x"}, "{Question}{Example_Response}", model="r0")
