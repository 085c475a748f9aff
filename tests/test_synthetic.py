"""The embedded synthetic dataset: format, determinism, splits, images and right answers."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from sherlock.data.response import extract_answer, parse_stages
from sherlock.embedded.synthetic import (
    BACKGROUND,
    COLOURS,
    KINDS,
    PERCEPTION_QUESTION,
    Shape,
    build_perception_data,
    build_synthetic_dataset,
    grid_description,
)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _derive_answer(question: str, scene: list[dict]) -> str:
    """The right answer, worked out here from the scene alone (not with the generator's code)."""
    if question == "How many shapes are in the image?":
        return str(len(scene))
    if match := re.fullmatch(r"What colour is the (\w+)\?", question):
        (obj,) = [o for o in scene if o["shape"] == match[1]]  # the question names a unique one
        return obj["colour"]
    if match := re.fullmatch(r"What shape is the (\w+) object\?", question):
        (obj,) = [o for o in scene if o["colour"] == match[1]]
        return obj["shape"]
    if match := re.fullmatch(r"Is the (\w+) (\w+) left or right of the (\w+) (\w+)\?", question):
        (a,) = [o for o in scene if (o["colour"], o["shape"]) == (match[1], match[2])]
        (b,) = [o for o in scene if (o["colour"], o["shape"]) == (match[3], match[4])]
        # Pixel extents: a is left of b when a's right edge is before b's left edge.
        if a["box"][2] < b["box"][0]:
            return "left"
        assert b["box"][2] < a["box"][0], "position question about overlapping columns"
        return "right"
    raise AssertionError(f"unexpected question {question!r}")


def test_records_are_llava_cot_format(synthetic_dir: Path) -> None:
    for split in ("train", "test"):
        for record in _read(synthetic_dir / f"{split}.jsonl"):
            assert record["image"] == f"images/{record['id']}.png"
            human, gpt = record["conversations"]
            assert human["from"] == "human" and gpt["from"] == "gpt"
            assert human["value"].startswith("<image>\n")
            assert human["value"].count("<image>") == 1
            assert parse_stages(gpt["value"]) is not None, gpt["value"]


def test_answers_are_right_for_the_drawn_scene(synthetic_dir: Path) -> None:
    records = _read(synthetic_dir / "train.jsonl") + _read(synthetic_dir / "test.jsonl")
    for record in records:
        question = record["conversations"][0]["value"].removeprefix("<image>\n")
        response = record["conversations"][1]["value"]
        assert extract_answer(response) == _derive_answer(question, record["scene"]), record["id"]
        # The caption names every object with its place, and nothing else.
        caption = parse_stages(response).caption
        for obj in record["scene"]:
            assert f"{obj['colour']} {obj['shape']}" in caption
        assert f"The image shows {len(record['scene'])} shape" in caption


def test_images_match_their_scene(synthetic_dir: Path, image_size: int) -> None:
    for record in _read(synthetic_dir / "train.jsonl")[:12]:
        with Image.open(synthetic_dir / record["image"]) as image:
            assert image.size == (image_size, image_size)
            rgb = image.convert("RGB")
            assert rgb.getpixel((0, 0)) == BACKGROUND
            for obj in record["scene"]:
                left, top, right, bottom = obj["box"]
                pixel = rgb.getpixel(((left + right) // 2, (top + bottom) // 2))
                # The object's centre has its colour (up to the shade jitter), nearest of all.
                nearest = min(
                    COLOURS,
                    key=lambda c: sum((p - q) ** 2 for p, q in zip(pixel, COLOURS[c], strict=True)),
                )
                assert nearest == obj["colour"], (record["id"], obj, pixel)


def test_splits_are_disjoint_and_balanced(synthetic_dir: Path) -> None:
    train = _read(synthetic_dir / "train.jsonl")
    test = _read(synthetic_dir / "test.jsonl")
    assert (len(train), len(test)) == (40, 12)
    train_ids = {r["id"] for r in train}
    test_ids = {r["id"] for r in test}
    assert len(train_ids) == len(train) and len(test_ids) == len(test)
    assert not train_ids & test_ids
    for split in (train, test):
        kinds = Counter(r["kind"] for r in split)
        assert set(kinds) == set(KINDS)
        assert max(kinds.values()) - min(kinds.values()) <= 1
    counts = Counter(len(r["scene"]) for r in train)
    assert set(counts) == {1, 2, 3, 4}
    for record in train + test:
        assert (synthetic_dir / record["image"]).is_file()


def test_deterministic_for_a_seed(tmp_path: Path, synthetic_dir: Path, image_size: int) -> None:
    summary = build_synthetic_dataset(tmp_path / "a", 40, 12, image_size, seed=7)
    assert summary["train"] == 40 and summary["test"] == 12
    for name in ("train.jsonl", "test.jsonl", "images/shapes-train-000005.png"):
        assert (tmp_path / "a" / name).read_bytes() == (synthetic_dir / name).read_bytes()
    build_synthetic_dataset(tmp_path / "b", 40, 12, image_size, seed=8)
    assert (tmp_path / "b" / "train.jsonl").read_bytes() != (
        synthetic_dir / "train.jsonl"
    ).read_bytes()
    # A record does not depend on how many others were drawn.
    build_synthetic_dataset(tmp_path / "c", 5, 2, image_size, seed=7)
    assert _read(tmp_path / "c" / "train.jsonl") == _read(synthetic_dir / "train.jsonl")[:5]


def test_other_image_sizes(tmp_path: Path) -> None:
    build_synthetic_dataset(tmp_path, 4, 1, 84, seed=1)
    for record in _read(tmp_path / "train.jsonl"):
        with Image.open(tmp_path / record["image"]) as image:
            assert image.size == (84, 84)
    with pytest.raises(ValueError, match="image_size"):
        build_synthetic_dataset(tmp_path / "small", 1, 1, 20, seed=1)


def test_the_validation_stream_is_a_disjoint_draw(tmp_path: Path, synthetic_dir: Path) -> None:
    summary = build_synthetic_dataset(tmp_path, 40, 12, 56, seed=7, heldout="validation")
    assert summary["heldout"] == "validation"
    # the training records are the same; the held-out file holds other scenes and questions
    assert _read(tmp_path / "train.jsonl") == _read(synthetic_dir / "train.jsonl")
    validation, test = _read(tmp_path / "test.jsonl"), _read(synthetic_dir / "test.jsonl")
    assert [r["id"] for r in validation] == [f"shapes-validation-{i:06d}" for i in range(12)]
    assert not {json.dumps(r["scene"]) for r in validation} & {json.dumps(r["scene"]) for r in test}
    for record in validation:
        question = record["conversations"][0]["value"].removeprefix("<image>\n")
        assert extract_answer(record["conversations"][1]["value"]) == _derive_answer(
            question, record["scene"]
        )
    with pytest.raises(ValueError, match="heldout"):
        build_synthetic_dataset(tmp_path / "x", 1, 1, 56, seed=7, heldout="train")


def test_grid_description_names_every_cell_in_reading_order() -> None:
    scene = [
        Shape("red", "circle", 0, 1, (30, 2, 45, 17)),
        Shape("purple", "triangle", 1, 0, (3, 30, 20, 47)),
    ]
    assert grid_description(scene) == (
        "top left: no shape; top right: a red circle; bottom left: a purple triangle; "
        "bottom right: no shape."
    )


def test_perception_rows_describe_their_own_images(tmp_path: Path) -> None:
    out = tmp_path / "perception.json"
    summary = build_perception_data(out, tmp_path / "images", 24, 56, seed=7)
    rows = json.loads(out.read_text())
    assert summary["scenes"] == len(rows) == 24
    row = rows[3]
    assert row["conversations"][0]["value"] == "<image>" + PERCEPTION_QUESTION
    assert row["images"] == [str(tmp_path / "images" / "shapes-perception-000003.png")]
    for row in rows:
        with Image.open(row["images"][0]) as image:
            pixels = image.convert("RGB").load()
        # each cell the description names holds that colour at some pixel; the others are blank
        for part in row["conversations"][1]["value"].rstrip(".").split("; "):
            place, thing = part.split(": ")
            row_, col = ("bottom" in place), ("right" in place)
            cell = [
                pixels[x, y]
                for x in range(28 * col, 28 * col + 28)
                for y in range(28 * row_, 28 * row_ + 28)
            ]
            coloured = [p for p in cell if p != BACKGROUND]
            if thing == "no shape":
                assert not coloured
            else:
                colour = COLOURS[thing.split()[1]]
                assert any(
                    max(abs(a - b) for a, b in zip(p, colour, strict=True)) <= 18 for p in coloured
                )
