"""Generation backends: a common interface (``base``) and its implementations (``hf``, ...)."""

from sherlock.generation.base import (
    BACKENDS,
    GenerationBackend,
    GenerationRequest,
    SamplingParams,
    TextBackend,
    cut_continuation,
    load_backend,
    load_text_backend,
)

__all__ = [
    "BACKENDS",
    "GenerationBackend",
    "GenerationRequest",
    "SamplingParams",
    "TextBackend",
    "cut_continuation",
    "load_backend",
    "load_text_backend",
]
