"""Preference records (docs/method.md §1): reading, checking and the per-record β of the recipe.

A record holds WHOLE responses: ``chosen = prefix + suffix_w`` and
``rejected = prefix_l + suffix_l``. The seed's documented form (``conversations``, ``chosen``,
``rejected``, ``prefix``, ``prefix_l``, ``weights``, ``images``) loads as is; our own records add
provenance (``id``, ``truncation``, ``noise_level``, ``source_id``, ``model``, ``recipe``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sherlock.data.records import IMAGE_TOKEN, ONE_IMAGE, single_image, strip_image_token


class PreferenceDataError(ValueError):
    """A preference file that cannot be trained on; the message names file, record and field."""


@dataclass(frozen=True)
class PreferenceExample:
    id: str
    image: str
    question: str
    chosen: str
    rejected: str
    prefix: str
    prefix_l: str
    weight: float | None = None
    truncation: int | None = None
    noise_level: float | None = None

    @property
    def suffix_w(self) -> str:
        return self.chosen[len(self.prefix) :]

    @property
    def suffix_l(self) -> str:
        return self.rejected[len(self.prefix_l) :]


def preference_row(example: PreferenceExample, **provenance: Any) -> dict[str, Any]:
    """The on-disk form of one record (the seed's keys plus ours)."""
    return {
        "id": example.id,
        "conversations": [{"from": "human", "value": IMAGE_TOKEN + example.question}],
        "chosen": {"from": "gpt", "value": example.chosen},
        "rejected": {"from": "gpt", "value": example.rejected},
        "prefix": example.prefix,
        "prefix_l": example.prefix_l,
        "weights": example.weight,
        "truncation": example.truncation,
        "noise_level": example.noise_level,
        "images": [example.image],
        **provenance,
    }


def _turn_value(row: dict, key: str) -> str:
    turn = row.get(key)
    if isinstance(turn, dict):
        turn = turn.get("value")
    if not isinstance(turn, str):
        raise KeyError(key)
    return turn


def _optional_number(
    row: dict,
    field: str,
    fail: Callable[[str, str], PreferenceDataError],
    *,
    minimum: float,
    exclusive: bool = False,
    integer: bool = False,
) -> Any:
    """A field that may be absent or null (None); otherwise a finite number in range.

    A missing weight is allowed (the trainer takes 1, the paper recipe computes its own β); a
    NaN, infinite, negative (or, for a weight, zero) one is an error, never a silent no-op.
    """
    value = row.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(field, f"not a number: {value!r}")
    if not math.isfinite(value):
        raise fail(field, f"not a finite number: {value!r}")
    if value < minimum or (exclusive and value == minimum):
        bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
        raise fail(field, f"must be {bound}, got {value!r}")
    if integer:
        if value != int(value):
            raise fail(field, f"not an integer: {value!r}")
        return int(value)
    return float(value)


def parse_preference_row(
    row: Any, index: int, origin: str, image_root: str | Path = "."
) -> PreferenceExample:
    """One row → example; PreferenceDataError naming the record and field when it is wrong."""
    record_id = str(row.get("id", index)) if isinstance(row, dict) else str(index)

    def fail(field: str, reason: str) -> PreferenceDataError:
        return PreferenceDataError(f"{origin}: record {index} (id {record_id}): {field}: {reason}")

    if not isinstance(row, dict):
        raise fail("record", "not an object")
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns or not isinstance(turns[-1], dict):
        raise fail("conversations", "missing or empty")
    question = turns[-1].get("value")
    if not isinstance(question, str) or not strip_image_token(question):
        raise fail("conversations", "no question text")
    try:
        chosen, rejected = _turn_value(row, "chosen"), _turn_value(row, "rejected")
    except KeyError as error:
        raise fail(error.args[0], "missing, or not a turn with a string 'value'") from None
    prefix, prefix_l = row.get("prefix") or "", row.get("prefix_l") or ""
    if not chosen.startswith(prefix):
        raise fail("prefix", "chosen does not start with its prefix")
    if not rejected.startswith(prefix_l):
        raise fail("prefix_l", "rejected does not start with its prefix_l")
    image = single_image(row.get("images"))
    if image is None:
        raise fail("images", ONE_IMAGE)
    if not Path(image).is_absolute() and not Path(image).exists():
        image = str(Path(image_root) / image)
    weight = _optional_number(row, "weights", fail, minimum=0.0, exclusive=True)
    noise = _optional_number(row, "noise_level", fail, minimum=0.0)
    truncation = _optional_number(row, "truncation", fail, minimum=0.0, integer=True)
    return PreferenceExample(
        record_id,
        image,
        strip_image_token(question),
        chosen,
        rejected,
        prefix,
        prefix_l,
        weight,
        truncation,
        noise,
    )


def load_preferences(path: str | Path, image_root: str | Path = ".") -> list[PreferenceExample]:
    """Every record of a preference JSON file, or an error naming the first bad one."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PreferenceDataError(f"{path}: cannot read preference records: {error}") from error
    if not isinstance(rows, list):
        raise PreferenceDataError(f"{path}: expected a JSON list of preference records")
    return [parse_preference_row(row, i, str(path), image_root) for i, row in enumerate(rows)]
