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


def sft_row(record_id: str, user_text: str, response: str, image: str, **extra: Any) -> dict:
    """An SFT example: (image, user text) → response. Extra keys are provenance."""
    return {
        "id": record_id,
        "conversations": [human_turn(user_text), {"from": "gpt", "value": response}],
        "images": [image],
        **extra,
    }


def prompt_row(record_id: str, question: str, image: str) -> dict:
    """An unlabeled example (online pools): the question and image only."""
    return {"id": record_id, "conversations": [human_turn(question)], "images": [image]}


def record_to_sft_row(record: Record) -> dict:
    return sft_row(record.id, record.question, record.answer, record.image)


def sft_row_to_record(row: dict, origin: str = "dataset") -> Record:
    """Back from an SFT row to a record (question without the image token)."""
    try:
        turns, image = row["conversations"], single_image(row["images"])
        if image is None:
            raise ValueError(f"images: {ONE_IMAGE}")
        return Record(
            str(row["id"]), image, strip_image_token(turns[0]["value"]), turns[-1]["value"]
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
