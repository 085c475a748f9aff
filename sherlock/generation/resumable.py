"""Generation that survives being killed: finished chunks are kept on disk and never redone.

``ResumableBackend`` wraps any backend, the llm judge's text backend too (``generate_text``).
Each call is cut into chunks of ``chunk_size`` requests; every finished chunk is written
atomically to the progress folder (outside the job's declared outputs, so Snakemake never
deletes it with a failed job). A rerun of the same job re-reads the chunks whose fingerprint
still matches and generates only the rest; the job deletes the folder once its own outputs are
written.

The same chunks shard a job over several GPUs: shard job ``i`` of ``n`` generates the chunks
whose index is ``i`` modulo ``n`` into its own folder, and the job that gathers them reads every
chunk back from the shard folders without loading the model.

Results depend neither on where a run was interrupted nor on how it was sharded: backends seed
batch ``b`` of a call with ``seed + b`` (the contract of ``GenerationBackend``), chunks are
whole batches, and chunk ``c`` is generated with the seed its first batch would have had in one
uninterrupted call.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sherlock.generation.base import (
    GenerationBackend,
    GenerationRequest,
    SamplingParams,
    TextBackend,
)
from sherlock.runtime import atomic
from sherlock.runtime.fingerprints import digest, file_digest

IDENTITY_FILE = "identity.json"


def request_fingerprint(request: GenerationRequest, image_digests: dict[str, str]) -> list[str]:
    """What a request asks: its texts and its image's CONTENT (not its path), so chunks made by a
    shard job, which writes its images elsewhere, serve the job that gathers them."""
    if request.image not in image_digests:
        image = Path(request.image)
        image_digests[request.image] = file_digest(image) if image.is_file() else request.image
    return [request.key, request.user_text, request.assistant_prefix, image_digests[request.image]]


class ResumableBackend(GenerationBackend):
    """``inner`` with chunked progress in ``progress_dir`` (see the module doc).

    ``inner`` may be a callable that loads the backend: it is called only when a chunk has to
    be generated, so a job whose chunks are all saved never loads the model. Sharding:
    with ``shard=(i, n)`` only the chunks whose index is ``i`` modulo ``n`` are generated (the
    others answer ``""`` and are left to the other shards); ``saved_dirs`` are searched for
    chunks too (the shard folders, read by the job that gathers them), and with
    ``require_saved`` a chunk found nowhere is an error instead of being generated.
    """

    def __init__(
        self,
        inner: GenerationBackend | TextBackend | Callable[[], GenerationBackend | TextBackend],
        progress_dir: str | os.PathLike[str],
        *,
        chunk_size: int,
        batch_size: int,
        identity: Any,
        shard: tuple[int, int] | None = None,
        saved_dirs: Sequence[str | os.PathLike[str]] = (),
        require_saved: bool = False,
    ) -> None:
        if chunk_size < 1 or chunk_size % batch_size:
            raise ValueError(
                f"chunk_size ({chunk_size}) must be a positive multiple of the batch size "
                f"({batch_size}), so chunks are whole batches"
            )
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard {shard[0]} of {shard[1]} does not exist")
        self._inner = inner
        self.shard = shard
        self.saved_dirs = [Path(folder) for folder in saved_dirs]
        self.require_saved = require_saved
        self._image_digests: dict[str, str] = {}
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

    @property
    def inner(self) -> Any:
        """The wrapped backend (``GenerationBackend`` or ``TextBackend``), loaded on first use."""
        if not hasattr(self._inner, "generate") and not hasattr(self._inner, "generate_text"):
            self._inner = self._inner()
        return self._inner

    def owns(self, position: int) -> bool:
        """Whether the request at ``position`` of a call is generated by this (shard) job."""
        return self.shard is None or (position // self.chunk_size) % self.shard[1] == self.shard[0]

    def _saved(self, name: str, expected: str, size: int) -> list[str] | None:
        for folder in [self.progress_dir, *self.saved_dirs]:
            texts = self._load(folder / name, expected, size)
            if texts is not None:
                return texts
        return None

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
        return self._chunked(
            requests,
            sampling,
            lambda request: request_fingerprint(request, self._image_digests),
            lambda chunk, chunk_sampling: self.inner.generate(chunk, chunk_sampling),
        )

    def generate_text(self, user_texts: Sequence[str], sampling: SamplingParams) -> list[str]:
        """A text backend's replies (``TextBackend``: the llm judge), kept chunk by chunk as
        ``generate`` keeps answers; the inner backend follows the same seed contract."""
        return self._chunked(
            user_texts,
            sampling,
            lambda text: [text],
            lambda chunk, chunk_sampling: self.inner.generate_text(chunk, chunk_sampling),
        )

    def _chunked(
        self,
        items: Sequence[Any],
        sampling: SamplingParams,
        fingerprint_of: Callable[[Any], list[str]],
        produce: Callable[[list[Any], SamplingParams], list[str]],
    ) -> list[str]:
        """One call: every chunk read back when saved, else produced and saved."""
        call = self.calls
        self.calls += 1
        outputs: list[str] = []
        for chunk_index, start in enumerate(range(0, len(items), self.chunk_size)):
            chunk = list(items[start : start + self.chunk_size])
            if not self.owns(start):
                outputs += [""] * len(chunk)  # another shard's
                continue
            chunk_sampling = dataclasses.replace(
                sampling, seed=sampling.seed + start // self.batch_size
            )
            fingerprint = digest(
                [dataclasses.asdict(chunk_sampling), [fingerprint_of(item) for item in chunk]]
            )
            name = f"call{call:03d}-chunk{chunk_index:06d}.json"
            texts = self._saved(name, fingerprint, len(chunk))
            if texts is None and self.require_saved:
                raise RuntimeError(
                    f"chunk {name} is in none of the shard folders {self.saved_dirs}: "
                    "rerun the shard jobs (their inputs or settings changed?)"
                )
            if texts is None:
                texts = produce(chunk, chunk_sampling)
                if len(texts) != len(chunk):
                    raise RuntimeError(f"the backend answered {len(texts)} of {len(chunk)}")
                keys = [getattr(item, "key", start + n) for n, item in enumerate(chunk)]
                atomic.write_json(
                    self.progress_dir / name,
                    {"fingerprint": fingerprint, "keys": keys, "outputs": texts},
                )
                self.generated_chunks += 1
            else:
                self.resumed_chunks += 1
            outputs += texts
        return outputs

    def report(self) -> str:
        where = " and the shard folders" if self.saved_dirs else ""
        return (
            f"{self.resumed_chunks} chunk(s) read back from {self.progress_dir}{where}, "
            f"{self.generated_chunks} generated"
        )

    def finish(self) -> None:
        """Forget the progress once the job's outputs are written."""
        _log(f"generation: {self.report()}")
        shutil.rmtree(self.progress_dir, ignore_errors=True)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
