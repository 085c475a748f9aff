"""What reruns a job: the line between what a job computes and how it runs.

Snakemake reruns a job when a compared ``param``, its list of input paths or its rule's shell
text changes. The rules (rules/common.smk, "Reruns follow results") keep everything below out
of those, so changing it rebuilds nothing:

- the training keys of ``EXECUTION_KEYS`` (per-device batch and accumulation at an equal global
  batch, DeepSpeed or FSDP, the policy for non-finite steps, workers, logging, checkpointing):
  they reach a training at launch (``launch_settings``), never its run file;
- a user's model folder is compared by ``identity`` (its files' names, sizes and times), not
  by its path, so moving it reruns nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

# Training keys that change how a training runs, not the model it makes. Per-device batch and
# accumulation are here because the global batch (global_batch_size, or their product on the
# same node) is what the optimizer sees; docs/configuration.md says why.
EXECUTION_KEYS = frozenset(
    {
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "per_device_eval_batch_size",
        "deepspeed",
        "fsdp",
        "fsdp_config",
        # a step that is not finite stops the run or is skipped: a finished model either way
        # was trained on the same steps unless one was skipped, which its summary lists
        "nonfinite_steps",
        "dataloader_num_workers",
        "preprocessing_num_workers",
        "logging_steps",
        "ddp_timeout",
        "gradient_checkpointing",
    }
)


def split_training(hparams: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the model depends on, how the training runs) of a training's resolved keys."""
    results = {k: v for k, v in hparams.items() if k not in EXECUTION_KEYS}
    execution = {k: v for k, v in hparams.items() if k in EXECUTION_KEYS}
    return results, execution


def compared_training(hparams: dict[str, Any], processes: int) -> dict[str, Any]:
    """The keys a training is compared by: its results keys and its global batch (examples per
    optimizer step), which per-device batch × accumulation × processes make up."""
    from sherlock.node import global_batch

    results, _ = split_training(hparams)
    return {**results, "global_batch_size": global_batch(hparams, processes)}


def launch_settings(hparams: dict[str, Any], **paths: Any) -> dict[str, Any]:
    """The run-file keys a training gets at launch: its execution keys (null = the tool's own
    default, left out) and ``paths`` (scratch folder, model folder, ...)."""
    _, execution = split_training(hparams)
    settings = {k: v for k, v in execution.items() if v is not None}
    return {**settings, **{k: v for k, v in paths.items() if v is not None}}


def identity(path: str | os.PathLike[str]) -> str:
    """What a user's file or folder is, independent of where it lies: a hub id stands for
    itself; a local file or folder is known by the names, sizes and modification times (to the
    second) of its files, as Snakemake knows an input by its time. Moving it (``mv``,
    ``cp -a``, ``rsync -a``) keeps its identity; replacing a file changes it."""
    root = Path(path)
    if not root.exists():
        return str(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    listing = [
        [str(p.relative_to(root)) if p != root else "", p.stat().st_size,
         int(p.stat().st_mtime)]
        for p in files
    ]  # fmt: skip
    digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]
    return f"{'folder' if root.is_dir() else 'file'}:{digest}"
