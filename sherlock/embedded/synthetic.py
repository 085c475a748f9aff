"""The embedded default dataset: coloured shapes with LLaVA-CoT style four-stage answers.

Each image holds 1–4 filled shapes, one per cell of a 2×2 grid, on a plain background. Every
question is about that scene (colour, shape, count or left/right position) and every answer is
templated in the SUMMARY / CAPTION / REASONING / CONCLUSION format (docs/method.md §1), so the data
is small, regular and checkable, yet a tiny model trained briefly still gets some of it wrong.

Perception records (``build_perception_data``) describe a scene cell by cell in a fixed order
("top left: a red circle; top right: no shape; ..."): the text a tiny random model first learns
to read its image tokens with, before any question is asked (the demo's perception stage).

Records are LLaVA-CoT-100k style JSONL lines (``id``, ``image`` relative to the output folder,
``conversations``) plus two provenance keys, ``kind`` and ``scene`` (the drawn objects, from
which the right answer can be re-derived).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from sherlock.data.sharegpt import sft_row, write_json

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
KINDS: tuple[str, ...] = ("colour", "shape", "count", "position")
BACKGROUND: tuple[int, int, int] = (235, 235, 235)
# Cells of the 2×2 layout as (row, column); the names are what captions say.
CELL_NAMES: dict[tuple[int, int], str] = {
    (0, 0): "top left",
    (0, 1): "top right",
    (1, 0): "bottom left",
    (1, 1): "bottom right",
}
PERCEPTION_QUESTION = "What is in each cell of the image?"
HELDOUT_STREAMS: tuple[str, ...] = ("test", "validation")
_COLOUR_JITTER = 18  # per-channel shade variation, so colours are not single pixel values
_MAX_TRIES = 1000


@dataclass(frozen=True)
class Shape:
    """One drawn object: what it is, its grid cell and its bounding box in pixels."""

    colour: str
    shape: str
    row: int
    col: int
    box: tuple[int, int, int, int]  # left, top, right, bottom (inclusive)

    @property
    def place(self) -> str:
        return CELL_NAMES[(self.row, self.col)]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def centre(self) -> tuple[int, int]:
        left, top, right, bottom = self.box
        return (left + right) // 2, (top + bottom) // 2


@dataclass(frozen=True)
class Question:
    kind: str
    text: str
    answer: str
    # The objects the question names, in the order it names them (for the reasoning text).
    targets: tuple[int, ...] = ()


def _sample_scene(rng: random.Random, image_size: int) -> list[Shape]:
    """1–4 shapes with distinct (colour, shape) pairs, one per grid cell, randomly placed."""
    n = rng.randint(1, 4)
    cells = rng.sample(sorted(CELL_NAMES), n)
    kinds = rng.sample([(c, s) for c in COLOURS for s in SHAPES], n)
    half = image_size // 2
    shapes = []
    for (row, col), (colour, shape) in zip(cells, kinds, strict=True):
        # Side between ~45% and ~75% of a cell, with a margin so shapes never touch.
        side = rng.randint(max(6, int(half * 0.45)), max(7, int(half * 0.75)))
        left = col * half + rng.randint(1, half - side - 1)
        top = row * half + rng.randint(1, half - side - 1)
        shapes.append(Shape(colour, shape, row, col, (left, top, left + side - 1, top + side - 1)))
    # Reading order (top to bottom, left to right) keeps the caption natural.
    return sorted(shapes, key=lambda s: (s.row, s.col))


def _make_question(rng: random.Random, kind: str, scene: list[Shape]) -> Question | None:
    """A question of this kind with a unique answer for the scene, or None if none exists."""
    if kind == "count":
        return Question(kind, "How many shapes are in the image?", str(len(scene)))
    if kind == "colour":
        counts = Counter(s.shape for s in scene)
        options = [i for i, s in enumerate(scene) if counts[s.shape] == 1]
        if not options:
            return None
        i = rng.choice(options)
        return Question(kind, f"What colour is the {scene[i].shape}?", scene[i].colour, (i,))
    if kind == "shape":
        counts = Counter(s.colour for s in scene)
        options = [i for i, s in enumerate(scene) if counts[s.colour] == 1]
        if not options:
            return None
        i = rng.choice(options)
        return Question(kind, f"What shape is the {scene[i].colour} object?", scene[i].shape, (i,))
    if kind == "position":
        pairs = [
            (i, j)
            for i in range(len(scene))
            for j in range(len(scene))
            if scene[i].col != scene[j].col
        ]
        if not pairs:
            return None
        i, j = rng.choice(pairs)
        answer = "left" if scene[i].col < scene[j].col else "right"
        text = f"Is the {scene[i].name} left or right of the {scene[j].name}?"
        return Question(kind, text, answer, (i, j))
    raise ValueError(f"unknown question kind {kind!r}; expected one of {KINDS}")


def _a(word: str) -> str:
    return "a" if word[0] not in "aeiou" else "an"


def _listing(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _side(shape: Shape) -> str:
    return "left" if shape.col == 0 else "right"


def _response(question: Question, scene: list[Shape]) -> str:
    """The four-stage answer, templated so every stage is right for the scene."""
    things = [f"{_a(s.colour)} {s.name} in the {s.place}" for s in scene]
    noun = "shape" if len(scene) == 1 else "shapes"
    caption = f"The image shows {len(scene)} {noun} on a plain background: {_listing(things)}."
    t = [scene[i] for i in question.targets]
    if question.kind == "colour":
        summary = f"I will find the {t[0].shape} in the image and name its colour."
        reasoning = (
            f"The only {t[0].shape} in the image is the {t[0].name} in the {t[0].place}. "
            f"So the {t[0].shape} is {t[0].colour}."
        )
    elif question.kind == "shape":
        summary = f"I will find the {t[0].colour} object in the image and name its shape."
        reasoning = (
            f"The only {t[0].colour} object in the image is the {t[0].name} in the "
            f"{t[0].place}. So the {t[0].colour} object is {_a(t[0].shape)} {t[0].shape}."
        )
    elif question.kind == "count":
        summary = "I will count the shapes in the image."
        names = [f"{_a(s.colour)} {s.name}" for s in scene]
        reasoning = f"The shapes are {_listing(names)}. That makes {len(scene)} {noun}."
    else:
        summary = f"I will compare the horizontal positions of the {t[0].name} and the {t[1].name}."
        reasoning = (
            f"The {t[0].name} is on the {_side(t[0])} side and the {t[1].name} is on the "
            f"{_side(t[1])} side. So the {t[0].name} is {question.answer} of the {t[1].name}."
        )
    return (
        f"<SUMMARY>{summary}</SUMMARY><CAPTION>{caption}</CAPTION>"
        f"<REASONING>{reasoning}</REASONING><CONCLUSION>{question.answer}</CONCLUSION>"
    )


def grid_description(scene: list[Shape]) -> str:
    """Every cell of the 2×2 grid in reading order, with its shape or "no shape"."""
    by_cell = {(s.row, s.col): f"{_a(s.colour)} {s.name}" for s in scene}
    return (
        "; ".join(f"{name}: {by_cell.get(cell, 'no shape')}" for cell, name in CELL_NAMES.items())
        + "."
    )


def _draw(scene: list[Shape], image_size: int, rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for s in scene:
        fill = tuple(
            min(255, max(0, c + rng.randint(-_COLOUR_JITTER, _COLOUR_JITTER)))
            for c in COLOURS[s.colour]
        )
        left, top, right, bottom = s.box
        if s.shape == "circle":
            draw.ellipse(s.box, fill=fill)
        elif s.shape == "square":
            draw.rectangle(s.box, fill=fill)
        else:  # triangle pointing up; its box centre lies inside it
            draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=fill)
    return image


def make_record(
    index: int, split: str, seed: int, image_size: int, stream: str | None = None
) -> tuple[dict, Image.Image]:
    """Record ``index`` of a split (kinds cycle so every split is balanced) and its image.

    Each record has its own random stream, so a record does not depend on the split sizes.
    ``stream`` (default: ``split``) names the stream the records are drawn from: the held-out
    file ``test.jsonl`` holds the ``test`` or the ``validation`` stream.
    """
    stream = stream or split
    if image_size < 28:
        raise ValueError(f"image_size must be at least 28 pixels, got {image_size}")
    kind = KINDS[index % len(KINDS)]
    rng = random.Random(f"sherlock-synthetic/{seed}/{stream}/{index}")
    for _ in range(_MAX_TRIES):
        scene = _sample_scene(rng, image_size)
        question = _make_question(rng, kind, scene)
        if question is not None:
            break
    else:  # pragma: no cover - every kind is reachable with a few draws
        raise RuntimeError(f"could not sample a {kind} question")
    record_id = f"shapes-{stream}-{index:06d}"
    record = {
        "id": record_id,
        "image": f"images/{record_id}.png",
        "conversations": [
            {"from": "human", "value": f"<image>\n{question.text}"},
            {"from": "gpt", "value": _response(question, scene)},
        ],
        "kind": kind,
        "scene": [asdict(s) for s in scene],
    }
    return record, _draw(scene, image_size, rng)


def build_synthetic_dataset(
    out_dir: Path,
    n_train: int,
    n_test: int,
    image_size: int,
    seed: int,
    heldout: str = "test",
) -> dict[str, Any]:
    """Write ``train.jsonl``, ``test.jsonl`` and ``images/<id>.png`` under ``out_dir``.

    ``test.jsonl`` is drawn from the ``heldout`` stream: ``test`` (the final scores) or
    ``validation`` (where settings are chosen; disjoint draws). Returns the record counts per
    split and per question kind.
    """
    if heldout not in HELDOUT_STREAMS:
        raise ValueError(f"heldout must be one of {HELDOUT_STREAMS}, got {heldout!r}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"image_size": image_size, "seed": seed, "heldout": heldout}
    for split, n in (("train", n_train), ("test", n_test)):
        kinds: Counter[str] = Counter()
        # Write to a temporary name first so an interrupted build never looks finished.
        path = out_dir / f"{split}.jsonl"
        partial = path.with_suffix(".jsonl.partial")
        with partial.open("w", encoding="utf-8") as handle:
            for index in range(n):
                stream = heldout if split == "test" else split
                record, image = make_record(index, split, seed, image_size, stream)
                image.save(out_dir / record["image"], format="PNG")
                handle.write(json.dumps(record) + "\n")
                kinds[record["kind"]] += 1
        partial.replace(path)
        summary[split] = n
        summary[f"{split}_kinds"] = dict(sorted(kinds.items()))
    return summary


def build_perception_data(
    out_json: Path, image_dir: Path, n: int, image_size: int, seed: int
) -> dict[str, Any]:
    """``n`` scenes of their own stream (``perception``), each with its cell-by-cell description,
    as ShareGPT SFT rows (``id``, ``conversations``, ``images``) in ``out_json``; PNGs in
    ``image_dir``, referenced by their path as given."""
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    rows, objects = [], Counter()
    for index in range(n):
        rng = random.Random(f"sherlock-synthetic/{seed}/perception/{index}")
        scene = _sample_scene(rng, image_size)
        record_id = f"shapes-perception-{index:06d}"
        image_path = image_dir / f"{record_id}.png"
        _draw(scene, image_size, rng).save(image_path, format="PNG")
        rows.append(
            sft_row(record_id, PERCEPTION_QUESTION, grid_description(scene), str(image_path))
        )
        objects[len(scene)] += 1
    write_json(out_json, rows)
    return {"scenes": n, "shapes_per_scene": dict(sorted(objects.items())), "seed": seed}
