"""ShareGPT rows as LLaMA-Factory reads them (docs/method.md §1): the form of every dataset file.

The image placeholder always opens the human turn (``"<image>" + text``), which is also where the
generation backend puts the image, so training and generation see the same prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sherlock.data.records import (
    IMAGE_TOKEN,
    ONE_IMAGE,
    Record,
    SourceDataError,
    single_image,
    strip_image_token,
)
from sherlock.runtime import atomic


def human_turn(user_text: str) -> dict[str, str]:
    return {"from": "human", "value": IMAGE_TOKEN + user_text}


def sft_row(
    record_id: str,
    user_text: str,
    response: str,
    image: str,
    history: tuple[tuple[str, str], ...] = (),
    **extra: Any,
) -> dict:
    """An SFT example: (image, user text) → response. Extra keys are provenance.

    ``history``: the (role, text) turns of a multi-turn record before ``user_text``; the image
    placeholder then opens the first of them, where the source had it.
    """
    turns = [{"from": role, "value": text} for role, text in history]
    turns += [{"from": "human", "value": user_text}, {"from": "gpt", "value": response}]
    turns[0] = human_turn(turns[0]["value"])
    return {"id": record_id, "conversations": turns, "images": [image], **extra}


def prompt_row(record_id: str, question: str, image: str) -> dict:
    """An unlabeled example (online pools): the question and image only."""
    return {"id": record_id, "conversations": [human_turn(question)], "images": [image]}


def record_to_sft_row(record: Record, whole: bool = False) -> dict:
    """The record's SFT row: its last question and answer, or with ``whole`` every turn."""
    history = record.history if whole else ()
    return sft_row(record.id, record.question, record.answer, record.image, history)


def with_whole_turns(rows: list[dict], records: list[Record], origin: str = "split") -> list[dict]:
    """``rows`` (a split's SFT rows) with every turn of their records (config
    ``source.multi_turn: whole``); an id without its record is an error naming it."""
    by_id = {record.id: record for record in records}
    out = []
    for number, row in enumerate(rows, start=1):
        record = by_id.get(str(row.get("id")))
        if record is None:
            raise SourceDataError(f"{origin}: row {number} (id {row.get('id')!r}) has no record")
        out.append(record_to_sft_row(record, whole=True))
    return out


def sft_row_to_record(row: dict, origin: str = "dataset") -> Record:
    """Back from an SFT row to a record: the last human turn is the question (without the image
    token), the last turn the answer, the turns before the question its history."""
    try:
        turns, image = row["conversations"], single_image(row["images"])
        if image is None:
            raise ValueError(f"images: {ONE_IMAGE}")
        last_human = max(i for i, turn in enumerate(turns) if turn["from"] == "human")
        history = tuple(
            (t["from"], strip_image_token(t["value"]) if t["from"] == "human" else t["value"])
            for t in turns[:last_human]
        )
        return Record(
            str(row["id"]),
            image,
            strip_image_token(turns[last_human]["value"]),
            turns[-1]["value"],
            history,
        )
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise SourceDataError(
            f"{origin}: row {row.get('id', '?')} is not an SFT row: {error!r}"
        ) from error


def write_json(path: str | Path, rows: list[dict]) -> None:
    """The rows as one JSON list, written complete or not at all."""
    atomic.write_json(path, rows)


def read_json(path: str | Path) -> list[dict]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
