"""Generation that survives being killed: finished chunks are kept on disk and never redone.

``ResumableBackend`` wraps any backend. Each ``generate`` call is cut into chunks of
``chunk_size`` requests; every finished chunk is written atomically to the progress folder
(outside the job's declared outputs, so Snakemake never deletes it with a failed job). A rerun
of the same job re-reads the chunks whose fingerprint still matches and generates only the rest;
the job deletes the folder once its own outputs are written.

Results do not depend on where a run was interrupted: backends seed batch ``b`` of a call with
``seed + b`` (the contract of ``GenerationBackend``), chunks are whole batches, and chunk ``c``
is generated with the seed its first batch would have had in one uninterrupted call.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sherlock import atomic
from sherlock.fingerprints import digest
from sherlock.generation.base import GenerationBackend, GenerationRequest, SamplingParams

IDENTITY_FILE = "identity.json"


class ResumableBackend(GenerationBackend):
    """``inner`` with chunked progress in ``progress_dir`` (see the module doc)."""

    def __init__(
        self,
        inner: GenerationBackend,
        progress_dir: str | os.PathLike[str],
        *,
        chunk_size: int,
        batch_size: int,
        identity: Any,
    ) -> None:
        if chunk_size < 1 or chunk_size % batch_size:
            raise ValueError(
                f"chunk_size ({chunk_size}) must be a positive multiple of the batch size "
                f"({batch_size}), so chunks are whole batches"
            )
        self.inner = inner
        self.chunk_size = chunk_size
        self.batch_size = batch_size
        self.progress_dir = Path(progress_dir)
        self.calls = 0
        self.resumed_chunks = 0
        self.generated_chunks = 0
        self._open(digest(identity))

    def _open(self, identity: str) -> None:
        """Keep earlier progress only when it was made by the same model and settings."""
        marker = self.progress_dir / IDENTITY_FILE
        if self.progress_dir.exists():
            try:
                same = json.loads(marker.read_text(encoding="utf-8")).get("identity") == identity
            except (OSError, ValueError, AttributeError):
                same = False
            if not same:
                _log(f"discarding {self.progress_dir}: made by another model, input or setting")
                shutil.rmtree(self.progress_dir)
        if not self.progress_dir.exists():
            self.progress_dir.mkdir(parents=True)
            atomic.write_json(marker, {"identity": identity})

    def _load(self, path: Path, expected: str, size: int) -> list[str] | None:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            _log(f"ignoring unreadable progress file {path}")
            return None
        outputs = saved.get("outputs") if isinstance(saved, dict) else None
        if saved.get("fingerprint") != expected or not isinstance(outputs, list):
            return None
        if len(outputs) != size or not all(isinstance(text, str) for text in outputs):
            return None
        return outputs

    def generate(
        self, requests: Sequence[GenerationRequest], sampling: SamplingParams
    ) -> list[str]:
        call = self.calls
        self.calls += 1
        outputs: list[str] = []
        for chunk_index, start in enumerate(range(0, len(requests), self.chunk_size)):
            chunk = list(requests[start : start + self.chunk_size])
            chunk_sampling = dataclasses.replace(
                sampling, seed=sampling.seed + start // self.batch_size
            )
            fingerprint = digest(
                [dataclasses.asdict(chunk_sampling), [dataclasses.astuple(r) for r in chunk]]
            )
            path = self.progress_dir / f"call{call:03d}-chunk{chunk_index:06d}.json"
            texts = self._load(path, fingerprint, len(chunk))
            if texts is None:
                texts = self.inner.generate(chunk, chunk_sampling)
                atomic.write_json(
                    path,
                    {"fingerprint": fingerprint, "keys": [r.key for r in chunk], "outputs": texts},
                )
                self.generated_chunks += 1
            else:
                self.resumed_chunks += 1
            outputs += texts
        return outputs

    def report(self) -> str:
        return (
            f"{self.resumed_chunks} chunk(s) resumed from {self.progress_dir}, "
            f"{self.generated_chunks} generated"
        )

    def finish(self) -> None:
        """Forget the progress once the job's outputs are written."""
        _log(f"generation: {self.report()}")
        shutil.rmtree(self.progress_dir, ignore_errors=True)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
