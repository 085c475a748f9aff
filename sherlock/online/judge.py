"""Self-consistency judges (docs/method.md §7.2): are the answers of turns 1–3 equivalent?

``exact``: the normalised CONCLUSION strings are equal (no model; the tiny default).
``llm``: a text model reads the published consistency prompt and says Yes or No; equivalent iff
its reply contains "yes" (case-insensitive), as the reference scripts decide.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sherlock.data.response import normalise_answer

_JUDGE_SLOTS = ("{question}", "{answer1}", "{answer2}", "{answer3}")
_SLOT = re.compile("|".join(re.escape(slot) for slot in _JUDGE_SLOTS))


@dataclass(frozen=True)
class JudgeItem:
    """One candidate as the judge sees it: the question and the three answers (never None)."""

    question: str
    answers: tuple[str, str, str]


def exact_equivalent(items: Sequence[JudgeItem]) -> list[bool]:
    """Normalised answers all equal (case, spacing and trailing full stops ignored)."""
    return [len({normalise_answer(a) for a in item.answers}) == 1 for item in items]


def judge_prompt(template: str, item: JudgeItem) -> str:
    """The consistency prompt filled in one pass (answers may contain braces or slot names)."""
    for slot in _JUDGE_SLOTS:
        if slot not in template:
            raise ValueError(f"the consistency judge prompt has no {slot} slot")
    values = dict(zip(_JUDGE_SLOTS, (item.question, *item.answers), strict=True))
    return _SLOT.sub(lambda match: values[match.group(0)], template)


def says_yes(reply: str) -> bool:
    """The reference scripts' rule: equivalent iff the reply contains "yes", any case."""
    return "yes" in reply.lower()


def llm_equivalent(
    items: Sequence[JudgeItem],
    template: str,
    generate_text: Callable[[list[str]], list[str]],
) -> tuple[list[bool], list[str]]:
    """Ask the text model about every item in one batched call; verdicts and raw replies."""
    replies = generate_text([judge_prompt(template, item) for item in items])
    if len(replies) != len(items):
        raise RuntimeError(f"the judge answered {len(replies)} of {len(items)} prompts")
    return [says_yes(reply) for reply in replies], replies
