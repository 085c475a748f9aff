"""The published prompts (docs/method.md §2), kept as data files, overridable from config.

The correction prompt REFINE(x, y) ships in the two wordings of the authors' code, word for word
the same, byte for byte different: ``clean`` (``refine.txt``, their preference trainer's) and
``trailing_spaces`` (``refine_trailing_spaces.txt``: spaces at the end of six lines, as their
Stage I data, Stage III candidate and evaluation scripts write it). Each place that builds a
REFINE prompt picks one (config ``prompts.refine``), by name or as the path of a custom file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

_PROMPTS = Path(__file__).parent / "prompts"
_SLOT = re.compile(r"\{Question\}|\{Example_Response\}")

# The shipped wordings of the refine prompt, by the name config and scripts use.
REFINE_WORDINGS = {"clean": "refine.txt", "trailing_spaces": "refine_trailing_spaces.txt"}
# The places that build a REFINE prompt, each with its own key under prompts.refine.
REFINE_PLACES = ("sft_data", "preference", "candidates", "evaluation")


def load_prompt(name: str, override: str | None = None) -> str:
    """The text of a shipped prompt (``refine``, ``consistency_judge``, ``answer_extraction``).

    ``override``: the path of a custom file; for ``refine`` also the name of a shipped wording
    (:data:`REFINE_WORDINGS`), which wins over a file of the same name.
    """
    if name == "refine" and override in REFINE_WORDINGS:
        return (_PROMPTS / REFINE_WORDINGS[override]).read_text(encoding="utf-8")
    if override:
        return Path(override).read_text(encoding="utf-8")
    return (_PROMPTS / f"{name}.txt").read_text(encoding="utf-8")


def refine_choice(setting: str | Mapping[str, str | None] | None, place: str) -> str | None:
    """The wording (a name or a path) config ``prompts.refine`` gives ``place``; None: clean.

    ``setting`` is the mapping of the four places, or one name or path for all of them (the form
    of earlier versions, which still loads).
    """
    if place not in REFINE_PLACES:
        raise ValueError(f"unknown place {place!r} of a refine prompt; expected {REFINE_PLACES}")
    if isinstance(setting, Mapping):
        return setting.get(place)
    return setting


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
