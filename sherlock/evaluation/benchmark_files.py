"""Evaluation benchmarks in one documented JSONL form, read with errors that name the bad record.

One JSON object per line:

* ``image`` (required): image file, relative to ``image_root`` (default: the file's folder);
* ``question`` (required): the question text, without an ``<image>`` token;
* ``answer`` (required): the expected answer; with ``choices``, an option letter (``"B"``) or the
  text of exactly one option;
* ``choices`` (optional): a list of 2–26 option texts, shown to the model as ``A. …``, ``B. …``;
  the item is then scored as multiple choice, otherwise by exact match;
* ``id`` (optional): unique within the file; defaults to ``<file stem>-<line number>``;
* ``hint`` (optional): context shown before the question as ``Hint: …`` (VLMEvalKit's layout);
* ``kind`` (optional, without ``choices``): ``exact`` (the default), ``yes_no`` (the answer is
  Yes or No; the CONCLUSION's yes or no is compared) or ``open`` (an answer the judge model
  extracts; ``sherlock.evaluation.open_answers``);
* ``meta`` (optional): an object carried to the responses untouched (a VLMEvalKit row's index,
  category and columns, which its benchmark's metric and the prediction files read).

Other keys are kept out of the way (ignored), so a converted benchmark may carry its own fields.
"""

from __future__ import annotations

import json
import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sherlock.data.chat import IMAGE_PLACEHOLDER
from sherlock.data.images import DEFAULT_MAX_PIXELS, image_problem
from sherlock.runtime import atomic

LETTERS = string.ascii_uppercase
MULTIPLE_CHOICE_INSTRUCTION = "Answer with the letter of the correct option."
YES_NO_INSTRUCTION = "Answer Yes or No."
MULTIPLE_CHOICE = "multiple_choice"
EXACT = "exact"
YES_NO = "yes_no"
OPEN = "open"
KINDS = (EXACT, YES_NO, OPEN)  # the kinds a record may name (multiple choice: by its choices)


class BenchmarkError(ValueError):
    """A benchmark file cannot be evaluated; the message lists every bad record and field."""


@dataclass(frozen=True)
class BenchmarkItem:
    """One question of a benchmark; ``answer`` is a letter for multiple-choice items."""

    id: str
    image: str
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    hint: str = ""
    kind: str = EXACT  # without choices; multiple_choice is told by the choices
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def multiple_choice(self) -> bool:
        return bool(self.choices)

    @property
    def answer_kind(self) -> str:
        return MULTIPLE_CHOICE if self.choices else self.kind

    def prompt(self) -> str:
        """The user text the model sees: the hint, the question, then the options if any."""
        text = f"Hint: {self.hint}\n{self.question}" if self.hint else self.question
        if self.kind == YES_NO and not self.choices:
            return f"{text}\n{YES_NO_INSTRUCTION}"
        if not self.choices:
            return text
        options = "\n".join(f"{LETTERS[i]}. {option}" for i, option in enumerate(self.choices))
        return f"{text}\nOptions:\n{options}\n{MULTIPLE_CHOICE_INSTRUCTION}"


def _required_text(obj: dict[str, Any], field: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value.strip():
        raise _FieldError(field, "missing or not a non-empty string")
    return value


class _FieldError(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _choices(obj: dict[str, Any]) -> tuple[str, ...]:
    value = obj.get("choices")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        raise _FieldError("choices", "must be a list of non-empty strings")
    if not 2 <= len(value) <= len(LETTERS):
        raise _FieldError("choices", f"must have 2 to {len(LETTERS)} options, has {len(value)}")
    return tuple(c.strip() for c in value)


def _answer_letter(answer: str, choices: tuple[str, ...]) -> str:
    """A multiple-choice answer as its option letter."""
    stripped = answer.strip()
    if len(stripped) == 1 and stripped.upper() in LETTERS[: len(choices)]:
        return stripped.upper()
    matches = [i for i, text in enumerate(choices) if text.lower() == stripped.lower()]
    if len(matches) == 1:
        return LETTERS[matches[0]]
    raise _FieldError(
        "answer",
        f"{answer!r} is neither an option letter A-{LETTERS[len(choices) - 1]} "
        "nor the text of exactly one option",
    )


def _item(obj: Any, default_id: str, image_root: Path, max_pixels: int) -> BenchmarkItem:
    if not isinstance(obj, dict):
        raise _FieldError("(record)", f"expected a JSON object, got {type(obj).__name__}")
    item_id = obj.get("id", default_id)
    if not isinstance(item_id, str | int) or isinstance(item_id, bool) or str(item_id) == "":
        raise _FieldError("id", "must be a non-empty string or an integer")
    question = _required_text(obj, "question")
    if IMAGE_PLACEHOLDER in question:
        raise _FieldError(
            "question",
            f"must not contain {IMAGE_PLACEHOLDER!r} (the image is always placed before the text)",
        )
    answer = _required_text(obj, "answer")
    image = image_root / _required_text(obj, "image")
    if not image.is_file():
        raise _FieldError("image", f"no such file: {image}")
    problem = image_problem(image, max_pixels)
    if problem:
        raise _FieldError("image", problem)
    choices = _choices(obj)
    if choices:
        answer = _answer_letter(answer, choices)
    hint = obj.get("hint", "")
    if not isinstance(hint, str):
        raise _FieldError("hint", "must be a string")
    kind = obj.get("kind", EXACT)
    if kind not in KINDS:
        raise _FieldError("kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == YES_NO and not choices and answer.strip().lower() not in ("yes", "no"):
        raise _FieldError("answer", f"a yes_no item's answer is Yes or No, not {answer!r}")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise _FieldError("meta", "must be a JSON object")
    return BenchmarkItem(
        str(item_id), str(image), question.strip(), answer.strip(), choices, hint.strip(), kind,
        meta,
    )


def read_benchmark(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    max_image_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[BenchmarkItem]:
    """Every item of a benchmark file; BenchmarkError listing each bad record otherwise."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise BenchmarkError(f"{path}: cannot read the benchmark file: {error}") from None
    items: list[BenchmarkItem] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            obj = json.loads(line.decode("utf-8"))
            item = _item(obj, f"{path.stem}-{number}", root, max_image_pixels)
        except UnicodeDecodeError as error:
            problems.append(f"{where}: not UTF-8 text ({error.reason} at byte {error.start})")
            continue
        except json.JSONDecodeError as error:
            problems.append(f"{where}: not valid JSON ({error.msg}, column {error.colno})")
            continue
        except _FieldError as error:
            problems.append(f"{where}, field {error.field!r}: {error.reason}")
            continue
        if item.id in seen:
            problems.append(
                f"{where}, field 'id': {item.id!r} already used on line {seen[item.id]}"
            )
            continue
        seen[item.id] = number
        items.append(item)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise BenchmarkError(f"{len(problems)} invalid benchmark record(s):\n  {shown}{more}")
    if not items:
        raise BenchmarkError(f"{path}: the benchmark has no items")
    return items


def write_benchmark(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Write benchmark rows (the documented form) as JSONL."""
    atomic.write_jsonl(path, rows)
