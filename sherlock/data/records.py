"""Source data → canonical records, with validation that loses nothing (docs/method.md §1).

Two source forms are read:

* ``llava_cot``: LLaVA-CoT-100k's ``train.jsonl``; one JSON object per line with ``id``,
  ``image`` (relative to an image root) and ``conversations``.
* ``sharegpt``: a JSON list of ``{"conversations": [...], "images": [path]}`` objects
  (LLaMA-Factory's ``sharegpt`` formatting); ``id`` is optional and defaults to
  ``<file stem>-<index>``.

A canonical record keeps the last human turn (the question, without its ``<image>`` token) and the
last answer, and the turns before them (``history``, without ``<image>`` tokens) for the SFT rows
that keep a multi-turn record whole (config ``source.multi_turn``). Every record that fails a
check goes to the rejects file with file, record number, id, field and reason; the caller decides
whether the invalid fraction is acceptable.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sherlock.data.images import DEFAULT_MAX_PIXELS, image_problem
from sherlock.data.response import format_problem
from sherlock.runtime import atomic

IMAGE_TOKEN = "<image>"
_ROLE_ALIASES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}


@dataclass(frozen=True)
class Record:
    """One annotated example: an image, a question and its four-stage answer."""

    id: str
    image: str
    question: str
    answer: str
    # The (role, text) turns before the question, roles "human" / "gpt"; empty for one turn.
    history: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Reject:
    """Why one source record was not kept."""

    file: str
    record: int  # 1-based line number (JSONL) or list index (JSON)
    id: str | None
    field: str
    reason: str


class SourceDataError(ValueError):
    """The source data cannot be used at all (unreadable file, too many invalid records)."""


def _raw_llava_cot(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed object or None, its error) for each non-blank line.

    Lines are decoded one by one, so a line that is not UTF-8 is one reject, not a lost file.
    """
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield line_number, json.loads(raw.decode("utf-8")), None
            except UnicodeDecodeError as error:
                yield line_number, None, f"not UTF-8 text: {error.reason} at byte {error.start}"
            except json.JSONDecodeError as error:
                yield line_number, None, f"invalid JSON: {error.msg} at column {error.colno}"


def _raw_sharegpt(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise SourceDataError(
            f"{path}: not UTF-8 text: {error.reason} at byte {error.start}"
        ) from error
    except json.JSONDecodeError as error:
        raise SourceDataError(
            f"{path}: invalid JSON: {error.msg} at line {error.lineno}"
        ) from error
    if not isinstance(data, list):
        raise SourceDataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    for index, item in enumerate(data):
        yield index, item, None


def _conversation_problem(turns: Any) -> tuple[str, str] | None:
    """(field, reason) when the turns do not alternate human/gpt ending on an answer."""
    if not isinstance(turns, list) or not turns:
        return "conversations", "missing or empty"
    roles = []
    for position, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return f"conversations[{position}]", "turn without a string 'value'"
        role = turn.get("from")
        if role == "system" and position == 0:
            continue
        if role not in _ROLE_ALIASES:
            return f"conversations[{position}].from", f"unknown role {role!r}"
        roles.append(_ROLE_ALIASES[role])
    expected = ["human", "gpt"] * (len(roles) // 2 + 1)
    if roles != expected[: len(roles)] or not roles or roles[-1] != "gpt":
        return "conversations", f"roles must alternate human/gpt and end with gpt, got {roles}"
    return None


def _last_turns(turns: list[dict]) -> tuple[str, str]:
    """The last human turn and the last answer."""
    human = [t["value"] for t in turns if _ROLE_ALIASES.get(t.get("from")) == "human"]
    gpt = [t["value"] for t in turns if _ROLE_ALIASES.get(t.get("from")) == "gpt"]
    return human[-1], gpt[-1]


def earlier_turns(turns: list[dict]) -> tuple[tuple[str, str], ...]:
    """The (role, text) human and gpt turns before the last human one, ``<image>`` removed from
    the human ones (a leading system turn is not kept, as for the question)."""
    roles = [_ROLE_ALIASES.get(t.get("from")) for t in turns]
    last_human = max(i for i, role in enumerate(roles) if role == "human")
    return tuple(
        (role, strip_image_token(turn["value"]) if role == "human" else turn["value"])
        for role, turn in zip(roles[:last_human], turns[:last_human], strict=True)
        if role in ("human", "gpt")
    )


def strip_image_token(text: str) -> str:
    """The question text without its ``<image>`` placeholder (LLaVA-CoT may omit it)."""
    return text.replace(IMAGE_TOKEN, "").strip()


ONE_IMAGE = "expected one image path: a string, or a list holding exactly one"


def single_image(images: Any) -> str | None:
    """The one image path of a ShareGPT-style ``images`` field, or None if it has not exactly one.

    LLaMA-Factory and the reference scripts' generators also write a single path as a plain
    string (``"images": "a.jpg"``); it reads as a one-image list.
    """
    if isinstance(images, str):
        return images or None
    if isinstance(images, list) and len(images) == 1 and isinstance(images[0], str):
        return images[0] or None
    return None


def _candidate(
    obj: Any, form: str, path: Path, index: int, image_root: Path
) -> tuple[Record | None, Reject | None]:
    """Shape checks of one raw record; the image itself is checked later, in parallel."""

    def reject(field: str, reason: str, record_id: str | None = None) -> tuple[None, Reject]:
        return None, Reject(str(path), index, record_id, field, reason)

    if not isinstance(obj, dict):
        return reject("record", f"expected an object, got {type(obj).__name__}")
    record_id = obj.get("id", f"{path.stem}-{index}" if form == "sharegpt" else None)
    if record_id is None or str(record_id).strip() == "":
        return reject("id", "missing")
    record_id = str(record_id)
    if form == "llava_cot":
        image = obj.get("image")
        if not isinstance(image, str) or not image:
            return reject("image", "missing or not a string", record_id)
    else:
        image = single_image(obj.get("images"))
        if image is None:
            return reject("images", ONE_IMAGE, record_id)
    problem = _conversation_problem(obj.get("conversations"))
    if problem:
        return reject(*problem, record_id)
    question, answer = _last_turns(obj["conversations"])
    if question.count(IMAGE_TOKEN) > 1:
        return reject("conversations", "more than one <image> in the question", record_id)
    question = strip_image_token(question)
    if not question:
        return reject("conversations", "empty question", record_id)
    stages = format_problem(answer)
    if stages:
        return reject(
            "conversations[-1].value", f"answer not in four-stage format: {stages}", record_id
        )
    image_path = image if os.path.isabs(image) else os.path.normpath(image_root / image)
    history = earlier_turns(obj["conversations"])
    return Record(record_id, image_path, question, answer, history), None


@dataclass
class LoadResult:
    records: list[Record]
    rejects: list[Reject]
    read: int

    def summary(self) -> dict[str, Any]:
        reasons = Counter(r.reason.split(":")[0] for r in self.rejects)
        return {
            "read": self.read,
            "valid": len(self.records),
            "rejected": len(self.rejects),
            "reject_reasons": dict(reasons.most_common()),
        }

    def summary_line(self) -> str:
        s = self.summary()
        reasons = ", ".join(f"{n} {r}" for r, n in s["reject_reasons"].items())
        return f"source records: {s['read']} read, {s['valid']} valid, {s['rejected']} rejected" + (
            f" ({reasons})" if reasons else ""
        )


def load_records(
    path: str | Path,
    form: str,
    image_root: str | Path,
    check_images: bool = True,
    workers: int = 8,
    max_image_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadResult:
    """Read and validate a source file; never raises for a bad record, only collects it."""
    path, image_root = Path(path), Path(image_root)
    if form not in ("llava_cot", "sharegpt"):
        raise SourceDataError(f"unknown source format {form!r}; expected llava_cot or sharegpt")
    if not path.is_file():
        raise SourceDataError(f"source file not found: {path}")
    raw = _raw_llava_cot(path) if form == "llava_cot" else _raw_sharegpt(path)
    candidates: list[Record] = []
    positions: list[int] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    read = 0
    for index, obj, json_error in raw:
        read += 1
        if json_error:
            rejects.append(Reject(str(path), index, None, "record", json_error))
            continue
        record, rejected = _candidate(obj, form, path, index, image_root)
        if rejected:
            rejects.append(rejected)
        elif record.id in seen:
            rejects.append(Reject(str(path), index, record.id, "id", "duplicate id"))
        else:
            seen.add(record.id)
            candidates.append(record)
            positions.append(index)
    if check_images:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            problems = list(
                pool.map(
                    partial(image_problem, max_pixels=max_image_pixels),
                    (r.image for r in candidates),
                )
            )
    else:
        problems = [None] * len(candidates)
    records = []
    for record, index, problem in zip(candidates, positions, problems, strict=True):
        if problem:
            field = "image" if form == "llava_cot" else "images"
            rejects.append(Reject(str(path), index, record.id, field, problem))
        else:
            records.append(record)
    rejects.sort(key=lambda r: r.record)
    return LoadResult(records, rejects, read)


def check_invalid_fraction(
    result: LoadResult, max_invalid_fraction: float, rejects_path: str
) -> None:
    """Stop the run when too much of the source is invalid; the rejects file says why."""
    if result.read == 0:
        raise SourceDataError("the source file holds no records")
    fraction = len(result.rejects) / result.read
    if fraction > max_invalid_fraction:
        raise SourceDataError(
            f"{len(result.rejects)} of {result.read} source records ({fraction:.1%}) are invalid, "
            f"more than source.max_invalid_fraction = {max_invalid_fraction:.1%}; "
            f"see {rejects_path} for each record and reason"
        )


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One JSON object per line, written complete or not at all."""
    atomic.write_jsonl(path, rows)


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def records_to_rows(records: list[Record]) -> list[dict]:
    """Records as JSON objects; ``history`` only for a multi-turn record, as ShareGPT turns."""
    rows = []
    for record in records:
        row = asdict(record)
        history = row.pop("history")
        if history:
            row["history"] = [{"from": role, "value": text} for role, text in history]
        rows.append(row)
    return rows


def rows_to_records(rows: list[dict], origin: str = "records") -> list[Record]:
    out = []
    for number, row in enumerate(rows, start=1):
        try:
            fields = {k: row[k] for k in ("id", "image", "question", "answer")}
            history = tuple((t["from"], t["value"]) for t in row.get("history") or [])
        except (KeyError, TypeError) as error:
            raise SourceDataError(f"{origin}: record {number} lacks field {error}") from error
        out.append(Record(**fields, history=history))
    return out


def rejects_to_rows(rejects: list[Reject]) -> list[dict]:
    return [asdict(r) for r in rejects]
