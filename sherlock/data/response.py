"""The LLaVA-CoT response format: four tagged stages in a fixed order (docs/method.md §1).

Every module that reads or cuts a response goes through here, so there is one definition of
"well formed", of "the answer" and of where the stage boundaries lie.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STAGES: tuple[str, ...] = ("SUMMARY", "CAPTION", "REASONING", "CONCLUSION")
CONCLUSION_END = "</CONCLUSION>"

# The whole response: the four stages in order, whitespace allowed between them.
_FOUR_STAGES = re.compile(
    r"\s*" + r"\s*".join(rf"<{tag}>(?P<{tag.lower()}>.*?)</{tag}>" for tag in STAGES) + r"\s*",
    re.DOTALL,
)
_CONCLUSION = re.compile(r"<CONCLUSION>(.*?)</CONCLUSION>", re.DOTALL)


@dataclass(frozen=True)
class Stages:
    """The text inside each of the four tags."""

    summary: str
    caption: str
    reasoning: str
    conclusion: str


def parse_stages(response: str) -> Stages | None:
    """The four stages of a well-formed response, or None when the format is broken."""
    match = _FOUR_STAGES.fullmatch(response)
    if match is None:
        return None
    return Stages(**{tag.lower(): match.group(tag.lower()) for tag in STAGES})


def format_problem(response: str) -> str | None:
    """Why a response is not in the four-stage format, or None when it is."""
    if _FOUR_STAGES.fullmatch(response):
        return None
    position = 0
    for tag in STAGES:
        start = response.find(f"<{tag}>", position)
        if start < 0:
            return f"missing <{tag}> (after the previous stage)"
        end = response.find(f"</{tag}>", start)
        if end < 0:
            return f"<{tag}> is never closed"
        position = end + len(tag) + 3
    if response[position:].strip():
        return "text after </CONCLUSION>"
    return "text outside the four tags"


def cut_after_conclusion(text: str) -> str:
    """Cut a generated response right after its first ``</CONCLUSION>`` (kept whole if none)."""
    end = text.find(CONCLUSION_END)
    return text if end < 0 else text[: end + len(CONCLUSION_END)]


def extract_answer(response: str) -> str | None:
    """The text inside the first CONCLUSION, stripped; None when there is no CONCLUSION."""
    match = _CONCLUSION.search(response)
    return None if match is None else match.group(1).strip()


def normalise_answer(answer: str) -> str:
    """Case-, space- and trailing-punctuation-insensitive form used to compare answers."""
    return re.sub(r"\s+", " ", answer).strip().strip(".").strip().lower()


def stage_start(response: str, tag: str) -> int:
    """Character offset of ``<tag>`` in a response; ValueError when it is absent."""
    if tag not in STAGES:
        raise ValueError(f"unknown stage {tag!r}; expected one of {STAGES}")
    offset = response.find(f"<{tag}>")
    if offset < 0:
        raise ValueError(f"response has no <{tag}>")
    return offset
