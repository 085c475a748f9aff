"""Generation by the models: one backend interface (``base``), its implementations (``hf`` for
transformers, ``vllm_backend`` for vLLM) looked up by name in ``backends``, progress saved in
chunks so that a killed job resumes (``resumable``), the command-line pattern every generating
job shares (``job``), and the self-correction rounds (``self_correct``) with their command line
``sherlock-correct`` (``correct_cli``).
"""

from sherlock.generation.backends import BACKENDS, load_backend, load_text_backend
from sherlock.generation.base import (
    GenerationBackend,
    GenerationRequest,
    SamplingParams,
    TextBackend,
    cut_continuation,
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
