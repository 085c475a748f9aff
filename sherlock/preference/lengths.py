"""Does a preference record fit ``cutoff_len``? Asked where pairs are built and by the trainer.

A record fits when every one of its ten contexts (prompt, image tokens and pre-filled prefix)
leaves room for at least one target token: a longer target is cut (policy and reference see the
same cut), but a context at or over the limit cannot be trained at all
(``sherlock.preference.encoding.encode_sequences`` refuses it). The lengths are measured through
that same encoding, on the image scaled as training scales it, so the check cannot disagree with
the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sherlock.data.images import PixelLimits
from sherlock.preference.encoding import (
    IGNORE_INDEX,
    SequenceSpec,
    encode_sequences,
    record_image,
    sequence_specs,
)
from sherlock.preference.losses import SEQUENCE_NAMES
from sherlock.preference.records import PreferenceExample


@dataclass(frozen=True)
class LongestContext:
    """The longest of a record's ten contexts: its sequence name and token count."""

    name: str
    tokens: int

    def fits(self, cutoff_len: int) -> bool:
        return self.tokens < cutoff_len


def longest_context(
    processor: Any,
    example: PreferenceExample,
    refine_template: str,
    pixels: PixelLimits | None = None,
) -> LongestContext:
    """The longest context of the record's ten sequences (each distinct one encoded once)."""
    specs = sequence_specs(example, refine_template)
    distinct: dict[tuple[str, str], str] = {}
    for name in SEQUENCE_NAMES:
        distinct.setdefault((specs[name].user_text, specs[name].assistant_prefix), name)
    # An empty target: only the context and the end-of-turn token are encoded.
    contexts = [SequenceSpec(user, prefix, "") for user, prefix in distinct]
    encoded = encode_sequences(processor, record_image(example, pixels), contexts)
    lengths = [int((sequence["labels"] == IGNORE_INDEX).sum()) for sequence in encoded]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    return LongestContext(list(distinct.values())[longest], lengths[longest])


def overflow_message(example_id: str, longest: LongestContext, cutoff_len: int) -> str:
    """One line naming a record that cannot fit, and why."""
    return (
        f"{example_id}: the {longest.name} context has {longest.tokens} tokens, "
        f"cutoff_len is {cutoff_len}"
    )


def overlong_records(
    processor: Any,
    examples: list[PreferenceExample],
    refine_template: str,
    cutoff_len: int,
    pixels: PixelLimits | None = None,
) -> dict[int, str]:
    """Position → message of every record of ``examples`` that cannot fit ``cutoff_len``."""
    found = {}
    for position, example in enumerate(examples):
        longest = longest_context(processor, example, refine_template, pixels)
        if not longest.fits(cutoff_len):
            found[position] = overflow_message(example.id, longest, cutoff_len)
    return found
