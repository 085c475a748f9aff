"""The generation backend interface: requests in, assistant continuations out.

A backend answers each request (one image, one user turn, optionally a pre-filled start of the
assistant turn) with the text the model writes AFTER that prefix, cut so that prefix +
continuation ends right after its first ``</CONCLUSION>`` (unless the sampling settings ask for
the raw answer: up to the model's end of turn or ``max_new_tokens``). The implementations are
looked up by name in ``sherlock.generation.backends``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sherlock.data.response import cut_after_conclusion


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt: ``key`` identifies it in the caller's bookkeeping; ``image`` is a file path."""

    key: str
    image: str
    user_text: str
    assistant_prefix: str = ""


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; temperature 0 means greedy decoding."""

    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    # False: the raw answer, not stopped or cut at its first </CONCLUSION> (what the authors'
    # Stage I data kept of R0's answers).
    stop_at_conclusion: bool = True

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


def cut_continuation(prefix: str, continuation: str) -> str:
    """The continuation, shortened so prefix + continuation ends after its first ``</CONCLUSION>``.

    A ``</CONCLUSION>`` already inside the prefix leaves nothing to continue; with none anywhere
    the continuation is kept whole.
    """
    cut = cut_after_conclusion(prefix + continuation)
    return cut[len(prefix) :]


class GenerationBackend(ABC):
    """Something that answers generation requests (transformers or vLLM)."""

    @abstractmethod
    def generate(
        self, requests: Sequence[GenerationRequest], sampling: SamplingParams
    ) -> list[str]:
        """For each request, in order, the assistant text after its prefix (see module doc).

        Batch ``b`` of a call (requests ``b·batch_size`` onwards) samples with seed
        ``sampling.seed + b``, so a call split into whole batches gives the same texts
        (``sherlock.generation.resumable`` relies on it).
        """


class TextBackend(Protocol):
    """A text-only chat model (the llm judge): the reply to each user message, in order."""

    def generate_text(self, user_texts: Sequence[str], sampling: SamplingParams) -> list[str]: ...
