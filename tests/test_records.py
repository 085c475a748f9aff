"""Source data → records: known records in, known records and rejects out."""

import json

import pytest
from PIL import Image

from sherlock.data.records import SourceDataError, check_invalid_fraction, load_records

ANSWER = (
    "<SUMMARY>Find the colour.</SUMMARY><CAPTION>A red circle.</CAPTION>"
    "<REASONING>The circle is red.</REASONING><CONCLUSION>red</CONCLUSION>"
)


def _turns(question, answer=ANSWER):
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


@pytest.fixture
def image_root(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(root / "sub" / "ok.png")
    (root / "sub" / "broken.png").write_bytes(b"not a png")
    return root


def _write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_llava_cot_valid_and_invalid_records_are_all_accounted_for(tmp_path, image_root):
    rows = [
        {"id": "a", "image": "sub/ok.png", "conversations": _turns("<image>\nWhat colour?")},
        # LLaVA-CoT often omits <image>: still valid, the question is kept as is
        {"id": "b", "image": "sub/ok.png", "conversations": _turns("Which shape?")},
        {"id": "c", "image": "sub/missing.png", "conversations": _turns("Q?")},
        {"id": "d", "image": "sub/broken.png", "conversations": _turns("Q?")},
        {
            "id": "e",
            "image": "sub/ok.png",
            "conversations": _turns("Q?", "<CAPTION>x</CAPTION><SUMMARY>y</SUMMARY>"),
        },
        {
            "id": "f",
            "image": "sub/ok.png",
            "conversations": [{"from": "gpt", "value": ANSWER}, {"from": "human", "value": "Q"}],
        },
        "{not json",
        {"id": "a", "image": "sub/ok.png", "conversations": _turns("dup")},
        {"image": "sub/ok.png", "conversations": _turns("no id")},
        # multi-turn: the last human turn and the last answer are used
        {
            "id": "g",
            "image": "sub/ok.png",
            "conversations": [
                {"from": "human", "value": "<image>first"},
                {"from": "gpt", "value": "old"},
                {"from": "human", "value": "second?"},
                {"from": "gpt", "value": ANSWER},
            ],
        },
    ]
    source = _write_jsonl(tmp_path / "train.jsonl", rows)
    result = load_records(source, "llava_cot", image_root)

    assert [r.id for r in result.records] == ["a", "b", "g"]
    assert result.records[0].question == "What colour?"
    assert result.records[1].question == "Which shape?"
    assert result.records[2].question == "second?"
    assert result.records[2].history == (("human", "first"), ("gpt", "old"))
    assert result.records[0].history == ()
    assert result.records[0].image == str(image_root / "sub" / "ok.png")
    assert result.read == 10
    assert len(result.records) + len(result.rejects) == result.read  # nothing vanishes
    by_line = {r.record: r for r in result.rejects}
    assert set(by_line) == {3, 4, 5, 6, 7, 8, 9}
    assert by_line[3].id == "c" and by_line[3].field == "image"
    assert "not found" in by_line[3].reason
    assert by_line[4].id == "d" and "cannot open image" in by_line[4].reason
    assert by_line[5].field == "conversations[-1].value" and "four-stage" in by_line[5].reason
    assert "alternate" in by_line[6].reason
    assert "invalid JSON" in by_line[7].reason
    assert by_line[8].reason == "duplicate id"
    assert by_line[9].field == "id"
    assert all(r.file == str(source) for r in result.rejects)
    assert result.summary_line().startswith("source records: 10 read, 3 valid, 7 rejected")


def test_sharegpt_json_with_and_without_ids(tmp_path, image_root):
    rows = [
        {"conversations": _turns("<image>Q1"), "images": ["sub/ok.png"]},
        {"id": "x", "conversations": _turns("<image>Q2"), "images": ["sub/ok.png"]},
        {"conversations": _turns("<image>Q3"), "images": ["sub/ok.png", "sub/ok.png"]},
        # The reference scripts' generators write one path as a plain string.
        {"id": "s", "conversations": _turns("<image>Q4"), "images": "sub/ok.png"},
        {"id": "e", "conversations": _turns("<image>Q5"), "images": ""},
    ]
    source = tmp_path / "data.json"
    source.write_text(json.dumps(rows))
    result = load_records(source, "sharegpt", image_root)
    assert [r.id for r in result.records] == ["data-0", "x", "s"]
    assert [r.question for r in result.records] == ["Q1", "Q2", "Q4"]
    assert result.records[2].image == result.records[0].image
    assert [(r.record, r.field) for r in result.rejects] == [(2, "images"), (4, "images")]


def test_too_many_invalid_records_stop_the_run_naming_the_rejects_file(tmp_path, image_root):
    rows = [
        {"id": str(i), "image": "sub/missing.png", "conversations": _turns("Q")} for i in range(3)
    ]
    rows.append({"id": "ok", "image": "sub/ok.png", "conversations": _turns("Q")})
    result = load_records(_write_jsonl(tmp_path / "t.jsonl", rows), "llava_cot", image_root)
    check_invalid_fraction(result, 0.8, "rejects.jsonl")  # 75 % allowed here
    with pytest.raises(SourceDataError, match=r"3 of 4 .*rejects\.jsonl"):
        check_invalid_fraction(result, 0.5, "rejects.jsonl")


def test_unreadable_sources_raise_clearly(tmp_path, image_root):
    with pytest.raises(SourceDataError, match="not found"):
        load_records(tmp_path / "nope.jsonl", "llava_cot", image_root)
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1}')
    with pytest.raises(SourceDataError, match="expected a JSON list"):
        load_records(bad, "sharegpt", image_root)


def test_a_multi_turn_record_is_kept_whole_or_by_its_last_turn():
    """source.multi_turn: D_A's and D_B's rows keep every turn (whole, the authors' runs) or the
    last question and answer; read back, the question is the last one either way. Stage I's
    direct row follows the D_B row; its REFINE row is one turn on the last question."""
    from sherlock.data.records import Record, records_to_rows, rows_to_records
    from sherlock.data.sharegpt import record_to_sft_row, sft_row_to_record
    from sherlock.sft.self_correction_data import sherlock_sft_rows

    record = Record("g", "ok.png", "second?", ANSWER, (("human", "first"), ("gpt", "old")))
    assert rows_to_records(records_to_rows([record])) == [record]
    assert "history" not in records_to_rows([Record("a", "ok.png", "Q?", ANSWER)])[0]
    whole = record_to_sft_row(record, whole=True)
    assert whole["conversations"] == [
        {"from": "human", "value": "<image>first"},  # the image where the source had it
        {"from": "gpt", "value": "old"},
        {"from": "human", "value": "second?"},
        {"from": "gpt", "value": ANSWER},
    ]
    last = record_to_sft_row(record)
    assert last["conversations"] == _turns("<image>second?")
    assert sft_row_to_record(whole) == record
    assert sft_row_to_record(last) == Record("g", "ok.png", "second?", ANSWER)
    from sherlock.data.records import SourceDataError
    from sherlock.data.sharegpt import with_whole_turns

    # D_B.json holds the last turn; rule whole_turns puts the earlier ones back from the records
    assert with_whole_turns([last], [record]) == [whole]
    with pytest.raises(SourceDataError, match="'h'"):
        with_whole_turns([{**last, "id": "h"}], [record], origin="D_B.json")
    direct, refine = sherlock_sft_rows(
        [sft_row_to_record(whole)], {"g": "y0"}, "{Question}|{Example_Response}", model="r0"
    )
    assert direct["conversations"] == whole["conversations"]
    assert refine["conversations"] == _turns("<image>second?|y0")
