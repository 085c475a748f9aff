"""Complete-or-absent files: write a hidden sibling, flush it to disk, then rename it into place.

A job killed at any moment (``kill -9``, preemption, a full disk) leaves either the previous file
or none at the target path, never a truncated one that a rerun or a user would take as finished.
The temporary name is fixed per target (Snakemake's lock means one writer per output), so a
rerun overwrites a stale one instead of piling them up; its suffix is the target's, so writers
that infer the format from the extension (matplotlib, pandas) still work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml


def temporary_sibling(path: str | os.PathLike[str]) -> Path:
    """The hidden name a file is written under before it is renamed onto ``path``."""
    final = Path(path)
    return final.with_name(f".{final.stem}.partial{final.suffix}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX; a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` only if the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(final)
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, final)
        _fsync_dir(final.parent)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], value: Any, indent: int | None = 1) -> None:
    """JSON, UTF-8 kept readable (no ``\\u`` escapes), newline-terminated."""
    write_text(path, json.dumps(value, ensure_ascii=False, indent=indent) + "\n")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> None:
    """One JSON value per line."""
    with atomic_output(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_yaml(path: str | os.PathLike[str], value: Any) -> None:
    write_text(path, yaml.safe_dump(value, sort_keys=False, allow_unicode=True))


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty scratch folder (``<path>.partial``) that replaces ``path`` on success.

    An interrupted build leaves only the scratch folder, which the next attempt clears.
    """
    import shutil

    final = Path(path)
    scratch = final.with_name(final.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    yield scratch
    shutil.rmtree(final, ignore_errors=True)
    os.replace(scratch, final)
    _fsync_dir(final.parent)
