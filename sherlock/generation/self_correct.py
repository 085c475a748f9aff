"""Self-correction rounds (docs/method.md §7, §9): y0, then y_t = generate(REFINE(x, y_{t−1})).

One batched generation call per round over every item, so a round costs one pass over the data
whatever the backend. Used by the online candidates, the evaluation and the inference command.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from sherlock.data.prompts import refine_prompt
from sherlock.generation import GenerationBackend, GenerationRequest, SamplingParams

# Seeds of successive rounds are spread apart so no two rounds share a batch seed.
ROUND_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Question:
    """One image and the question asked about it; ``key`` identifies it to the caller."""

    key: str
    image: str
    text: str


def self_correct(
    backend: GenerationBackend,
    questions: Sequence[Question],
    refine_template: str,
    sampling: SamplingParams,
    rounds: int,
) -> list[list[str]]:
    """For each question, in order, ``[y0, y1, …, y_rounds]``.

    Round t samples with seed ``sampling.seed + t · ROUND_SEED_STRIDE``.
    """
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    histories: list[list[str]] = [[] for _ in questions]
    for round_index in range(rounds + 1):
        requests = [
            GenerationRequest(
                key=question.key,
                image=question.image,
                user_text=(
                    question.text
                    if round_index == 0
                    else refine_prompt(refine_template, question.text, history[-1])
                ),
            )
            for question, history in zip(questions, histories, strict=True)
        ]
        round_sampling = dataclasses.replace(
            sampling, seed=sampling.seed + ROUND_SEED_STRIDE * round_index
        )
        for history, response in zip(
            histories, backend.generate(requests, round_sampling), strict=True
        ):
            history.append(response)
    return histories
