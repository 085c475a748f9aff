"""Reading benchmark files: the documented JSONL form, and errors that name file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from sherlock.evaluation.benchmark_files import (
    MULTIPLE_CHOICE_INSTRUCTION,
    BenchmarkError,
    read_benchmark,
    write_benchmark,
)


@pytest.fixture()
def bench_dir(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (8, 8), "white").save(tmp_path / "img" / f"{name}.png")
    return tmp_path


def write_lines(path: Path, lines: list) -> Path:
    path.write_bytes(
        b"\n".join(line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines)
        + b"\n"
    )
    return path


def test_reads_exact_and_multiple_choice_items(bench_dir: Path) -> None:
    path = write_lines(
        bench_dir / "bench.jsonl",
        [
            {"image": "img/a.png", "question": "What colour?", "answer": "blue"},
            {
                "id": "mc",
                "image": "img/b.png",
                "question": "Which animal?",
                "answer": "dog",
                "choices": ["cat", "dog"],
                "source": "extra keys are fine",
            },
            {
                "image": "img/b.png",
                "question": "Letter answer?",
                "answer": "a",
                "choices": ["x", "y", "z"],
            },
        ],
    )
    first, mc, letter = read_benchmark(path)
    assert first.id == "bench-1" and not first.multiple_choice
    assert first.image == str(bench_dir / "img" / "a.png")
    assert first.prompt() == "What colour?"
    assert mc.id == "mc" and mc.answer == "B"  # the option text becomes its letter
    assert mc.prompt() == f"Which animal?\nOptions:\nA. cat\nB. dog\n{MULTIPLE_CHOICE_INSTRUCTION}"
    assert letter.answer == "A"


def test_image_root_overrides_the_files_folder(bench_dir: Path, tmp_path_factory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    path = write_lines(elsewhere / "b.jsonl", [{"image": "a.png", "question": "q", "answer": "x"}])
    (item,) = read_benchmark(path, image_root=bench_dir / "img")
    assert item.image == str(bench_dir / "img" / "a.png")


def test_every_bad_record_is_named_with_file_line_and_field(bench_dir: Path) -> None:
    good = {"image": "img/a.png", "question": "q", "answer": "x"}
    path = write_lines(
        bench_dir / "bad.jsonl",
        [
            good,  # line 1
            b"{not json",  # 2
            {"image": "img/a.png", "answer": "x"},  # 3: no question
            {"image": "img/missing.png", "question": "q", "answer": "x"},  # 4
            {"image": "img/a.png", "question": "q", "answer": "z", "choices": ["x", "y"]},  # 5
            {"image": "img/a.png", "question": "q", "answer": "x", "choices": ["x"]},  # 6
            {"id": "bad-1", **good},  # 7: the default id of line 1
            b"\xff\xfe not utf-8",  # 8
            {"image": "img/a.png", "question": "<image>q", "answer": "x"},  # 9
            {"image": "img/a.png", "question": "q", "answer": "   "},  # 10
            ["a", "list"],  # 11
        ],
    )
    with pytest.raises(BenchmarkError) as caught:
        read_benchmark(path)
    message = str(caught.value)
    assert message.startswith("10 invalid benchmark record(s)")
    expected = [
        "line 2: not valid JSON",
        "line 3, field 'question'",
        "line 4, field 'image': no such file",
        "line 5, field 'answer'",
        "line 6, field 'choices': must have 2 to 26 options",
        "line 7, field 'id': 'bad-1' already used on line 1",
        "line 8: not UTF-8",
        "line 9, field 'question': must not contain '<image>'",
        "line 10, field 'answer'",
        "line 11, field '(record)'",
    ]
    for fragment in expected:
        assert f"{path}, {fragment}" in message


def test_an_empty_or_missing_file_is_an_error(bench_dir: Path) -> None:
    with pytest.raises(BenchmarkError, match="no items"):
        read_benchmark(write_lines(bench_dir / "empty.jsonl", []))
    with pytest.raises(BenchmarkError, match="cannot read"):
        read_benchmark(bench_dir / "absent.jsonl")


def test_written_rows_read_back(bench_dir: Path) -> None:
    rows = [{"id": "q1", "image": "img/a.png", "question": "q?", "answer": "ünïcode"}]
    path = bench_dir / "out.jsonl"
    write_benchmark(path, rows)
    (item,) = read_benchmark(path)
    assert (item.id, item.answer) == ("q1", "ünïcode")
