"""Fingerprints of a run's inputs: saved progress is reused only by the very same run."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def digest(value: Any) -> str:
    """SHA-256 of a JSON-serialisable value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def folder_signature(path: str | os.PathLike[str]) -> list[list[Any]]:
    """(relative path, size, mtime) of every file under a folder: changes when it is rebuilt.

    A path that is not a local folder (a hub id) stands for itself.
    """
    root = Path(path)
    if not root.is_dir():
        return [[str(path)]]
    return [
        [str(file.relative_to(root)), file.stat().st_size, file.stat().st_mtime_ns]
        for file in sorted(root.rglob("*"))
        if file.is_file()
    ]
