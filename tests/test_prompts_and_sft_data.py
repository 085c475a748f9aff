import hashlib

import pytest

from sherlock.data.prompts import load_prompt, refine_prompt
from sherlock.data.records import Record
from sherlock.sft.self_correction_data import answer_stats, sherlock_sft_rows

# SHA-256 of the published prompt files, byte for byte: released Sherlock checkpoints were
# trained on this exact wording, so any edit to the shipped files must fail here.
PUBLISHED_SHA256 = {
    "refine": "c37f36f7563e777a3d7d412515b405e63514e5d70207316cb01fa08d167488de",
    "consistency_judge": "8d19e766b475f8666b3dd9b1c4eeb54a5d8579d67fea4f309f680f75faf05ab9",
}


def test_published_prompts_are_shipped_unchanged():
    for name, digest in PUBLISHED_SHA256.items():
        shipped = load_prompt(name)
        assert hashlib.sha256(shipped.encode("utf-8")).hexdigest() == digest, name


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
