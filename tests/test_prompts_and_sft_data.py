import hashlib

import pytest

from sherlock.data.prompts import REFINE_PLACES, load_prompt, refine_choice, refine_prompt
from sherlock.data.records import Record
from sherlock.sft.self_correction_data import answer_stats, sherlock_sft_rows

# SHA-256 of the shipped prompt files, byte for byte. The authors' code has two wordings of the
# refine prompt: `clean` (their preference trainer's, train/LLaMA-Factory/src/llamafactory/data/
# processor/pairwise.py) and `trailing_spaces` (their Stage I data, Stage III candidates and
# evaluation: train/data_construction/sft/gen_data.py, .../online/gen_candidate.py,
# inference/VLMEvalKit/vlmeval/vlm/llama_vision.py). Each file must stay the authors' bytes.
PUBLISHED_SHA256 = {
    "refine": "c37f36f7563e777a3d7d412515b405e63514e5d70207316cb01fa08d167488de",
    "refine_trailing_spaces": "7e279a048c877433c7ea3f99a7312ceb0a6eebe3371e950182c34b6174889423",
    "consistency_judge": "8d19e766b475f8666b3dd9b1c4eeb54a5d8579d67fea4f309f680f75faf05ab9",
}


def test_published_prompts_are_shipped_unchanged():
    for name, digest in PUBLISHED_SHA256.items():
        shipped = load_prompt(name)
        assert hashlib.sha256(shipped.encode("utf-8")).hexdigest() == digest, name


def test_the_two_refine_wordings_differ_only_by_trailing_spaces():
    clean, spaced = load_prompt("refine", "clean"), load_prompt("refine", "trailing_spaces")
    assert clean == load_prompt("refine") and spaced == load_prompt("refine_trailing_spaces")
    assert clean != spaced
    clean_lines, spaced_lines = clean.split("\n"), spaced.split("\n")
    assert [line.rstrip(" ") for line in spaced_lines] == clean_lines
    padded = [line for line in spaced_lines if line.endswith(" ")]
    assert [line.rstrip(" ") for line in padded] == [
        clean_lines[1],  # "... and with a reasonable logic."
        "QUESTION:",
        "{Question}",  # two spaces after it
        "EXAMPLE RESPONSE:",
        "Now, refine and improve the RESPONSE further. You can consider two approaches:",
        clean_lines[12],  # "2. NEW RESPONSE: ... resolves the QUESTION."
    ]
    assert len(spaced) - len(clean) == 7


def test_each_place_picks_its_refine_wording():
    per_place = {
        "sft_data": "trailing_spaces",
        "preference": "clean",
        "candidates": "my.txt",
        "evaluation": None,
    }
    assert [refine_choice(per_place, place) for place in REFINE_PLACES] == [
        "trailing_spaces",
        "clean",
        "my.txt",
        None,
    ]
    # one name or path (the form of earlier versions) applies everywhere
    assert {refine_choice("my.txt", place) for place in REFINE_PLACES} == {"my.txt"}
    assert refine_choice(None, "evaluation") is None
    with pytest.raises(ValueError, match="judge"):
        refine_choice(per_place, "judge")


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
