"""Training runs whose checkpoint is complete or absent, and that resume after being killed.

Every training writes into a scratch folder (``<results>/models/<name>.partial``) and the
finished model is renamed into place, so the checkpoint target exists only when it is whole.
Intermediate checkpoints (``checkpoint-<step>``) land in the scratch folder too; a rerun of the
SAME run (same run file, data and starting model: the fingerprint) continues from the last one
that was completely written, and any other scratch content is cleared first.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sherlock.runtime import atomic
from sherlock.runtime.fingerprints import digest, file_digest, folder_signature

FINGERPRINT_FILE = "sherlock_run_fingerprint.json"
# Written into the scratch folder by the runs that need them; never part of a finished model.
REFERENCE_TABLE = "reference_logps.safetensors"
RESUME_FILE = "resume_run.yaml"
CHECKPOINT_PREFIX = "checkpoint-"
# A full model's weights, or a LoRA adapter's.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def run_fingerprint(settings: Any, data_files: Iterable[str | os.PathLike[str]], model: str) -> str:
    """What makes two attempts the same run: settings, data contents and the starting model."""
    return digest(
        {
            "settings": settings,
            "data": [file_digest(path) for path in data_files],
            "model": folder_signature(model),
        }
    )


def checkpoint_keys(checkpointing: dict[str, Any]) -> dict[str, Any]:
    """Trainer keys of config ``checkpointing``: periodic full saves (optimizer included, so a
    run can resume), at most ``save_total_limit`` of them; or none."""
    if checkpointing.get("save_steps") is None:
        return {"save_strategy": "no"}
    return {
        "save_strategy": "steps",
        "save_steps": checkpointing["save_steps"],
        "save_total_limit": checkpointing["save_total_limit"],
        "save_only_model": False,
    }


def checkpoint_step(folder: str | os.PathLike[str]) -> int:
    """The optimizer step of an intermediate checkpoint folder (``checkpoint-<step>``)."""
    return int(Path(folder).name[len(CHECKPOINT_PREFIX) :])


def checkpoint_is_complete(folder: Path) -> bool:
    """Trainer writes ``trainer_state.json`` last: with it readable and the weights present, the
    save finished."""
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    has_weights = any((folder / name).is_file() for name in WEIGHT_FILES)
    return has_weights or any(folder.glob("global_step*"))  # DeepSpeed's own layout


def intermediate_checkpoints(scratch: Path) -> list[Path]:
    folders = [
        path
        for path in scratch.glob(f"{CHECKPOINT_PREFIX}*")
        if path.is_dir() and path.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return sorted(folders, key=checkpoint_step)


def last_complete_checkpoint(scratch: Path) -> Path | None:
    for folder in reversed(intermediate_checkpoints(scratch)):
        if checkpoint_is_complete(folder):
            return folder
        _log(f"skipping {folder}: its save did not finish")
    return None


def prepare_scratch(scratch: str | os.PathLike[str], fingerprint: str, resume: bool) -> Path | None:
    """Make ``scratch`` ready for this run; return the checkpoint to resume from, if any.

    Earlier content is kept only when ``resume`` is on, it belongs to this very run and holds a
    complete intermediate checkpoint; otherwise the folder is cleared.
    """
    scratch = Path(scratch)
    marker = scratch / FINGERPRINT_FILE
    if resume and scratch.is_dir():
        try:
            same = json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") == fingerprint
        except (OSError, ValueError, AttributeError):
            same = False
        if same:
            checkpoint = last_complete_checkpoint(scratch)
            if checkpoint is not None:
                _log(f"resuming training from {checkpoint} (step {checkpoint_step(checkpoint)})")
                return checkpoint
        elif intermediate_checkpoints(scratch):
            _log(f"discarding {scratch}: its checkpoints belong to another run")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    atomic.write_json(marker, {"fingerprint": fingerprint})
    return None


def finalise(scratch: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Drop the intermediate checkpoints and our markers, then move the model into place."""
    scratch, final = Path(scratch), Path(final)
    for folder in intermediate_checkpoints(scratch):
        shutil.rmtree(folder)
    for name in (FINGERPRINT_FILE, REFERENCE_TABLE, RESUME_FILE):
        (scratch / name).unlink(missing_ok=True)
    shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scratch, final)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
