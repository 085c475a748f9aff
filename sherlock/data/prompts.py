"""The two published prompts (docs/method.md §2), kept as data files, overridable from config."""

from __future__ import annotations

import re
from pathlib import Path

_PROMPTS = Path(__file__).parent / "prompts"
_SLOT = re.compile(r"\{Question\}|\{Example_Response\}")


def load_prompt(name: str, override: str | None = None) -> str:
    """The text of ``refine`` or ``consistency_judge``; ``override`` is a path to a custom file."""
    if override:
        return Path(override).read_text(encoding="utf-8")
    return (_PROMPTS / f"{name}.txt").read_text(encoding="utf-8")


def refine_prompt(template: str, question: str, response: str) -> str:
    """REFINE(x, y): the self-correction instruction filled with a question and a response.

    One pass over the template, not ``str.format``: responses may contain braces, and a question
    that happens to contain a slot name must stay as it is.
    """
    values = {"{Question}": question, "{Example_Response}": response}
    for slot in values:
        if slot not in template:
            raise ValueError(f"the refine prompt has no {slot} slot")
    return _SLOT.sub(lambda match: values[match.group(0)], template)
