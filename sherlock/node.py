"""One key for the node: ``node.gpus`` decides how the GPU jobs are laid out.

From ``node.gpus: N`` (0: a CPU run) come, unless a key of their own says otherwise:

- ``resources.train.gpu`` = N: a training takes the whole node (one process per GPU, the
  launchers' process count; with DeepSpeed on one GPU, LLaMA-Factory and our trainer still start
  under ``torchrun``, which DeepSpeed needs);
- ``resources.generate.gpu`` = 1 (0 on a CPU run): one model per GPU;
- ``generation.shards`` = N // ``resources.generate.gpu`` (1 on a CPU run): every GPU generates.

The global batch of a training (``global_batch_size`` in an ``sft`` or ``preference`` section,
the recipe's own number) stays what the recipe says whatever N is: the per-device batch is kept
(or lowered to the largest divisor that fits) and ``gradient_accumulation_steps`` makes up the
rest. An explicit ``gradient_accumulation_steps`` wins over ``global_batch_size``.

Everything here is how a job runs, not what it computes: none of it reruns a built file
(docs/configuration.md, "What reruns").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sherlock.config import ConfigError


@dataclass(frozen=True)
class Layout:
    """The resolved GPU layout of a run."""

    gpus: int  # node.gpus
    train_gpu: int  # GPUs per training job (per node)
    generate_gpu: int  # GPUs per generating job
    shards: int  # jobs per generating step
    nodes: int  # nodes per training job

    @property
    def processes(self) -> int:
        """Training processes across all nodes (1 on a CPU)."""
        return max(self.train_gpu, 1) * self.nodes


def layout(config: dict[str, Any]) -> Layout:
    """The GPU layout of ``config``: explicit keys, else what ``node.gpus`` derives."""
    gpus = config["node"]["gpus"]
    train = config["resources"]["train"]
    generate = config["resources"]["generate"]
    train_gpu = gpus if train["gpu"] is None else train["gpu"]
    generate_gpu = (1 if gpus else 0) if generate["gpu"] is None else generate["gpu"]
    shards = config["generation"]["shards"]
    if shards is None:
        shards = max(gpus // generate_gpu, 1) if gpus and generate_gpu else 1
    return Layout(gpus, train_gpu, generate_gpu, shards, train.get("nodes", 1))


def apply_layout(config: dict[str, Any]) -> Layout:
    """Write the resolved layout into ``config`` (rules and scripts read plain numbers)."""
    resolved = layout(config)
    config["resources"]["train"]["gpu"] = resolved.train_gpu
    config["resources"]["generate"]["gpu"] = resolved.generate_gpu
    if config["resources"]["gather"]["gpu"] is None:
        config["resources"]["gather"]["gpu"] = 0
    config["generation"]["shards"] = resolved.shards
    return resolved


def _largest_divisor_at_most(number: int, limit: int) -> int:
    return max(d for d in range(1, min(number, limit) + 1) if number % d == 0)


def resolve_batch(hparams: dict[str, Any], processes: int, where: str) -> dict[str, Any]:
    """``hparams`` with ``global_batch_size`` turned into the per-device batch and gradient
    accumulation of ``processes`` training processes; ``where`` names the section in errors.

    Without ``global_batch_size`` (or with an explicit ``gradient_accumulation_steps``) the keys
    stay as given.
    """
    hparams = dict(hparams)
    total = hparams.pop("global_batch_size", None)
    if total is None or hparams.get("gradient_accumulation_steps") is not None:
        return hparams
    per_device = hparams.get("per_device_train_batch_size") or 1
    if total % processes:
        raise ConfigError(
            f"{where}.global_batch_size: {total} is not a multiple of the {processes} training "
            "processes (node.gpus × resources.train.nodes); set gradient_accumulation_steps "
            "and per_device_train_batch_size yourself"
        )
    per_process = total // processes
    per_device = _largest_divisor_at_most(per_process, per_device)
    hparams["per_device_train_batch_size"] = per_device
    hparams["gradient_accumulation_steps"] = per_process // per_device
    return hparams


def global_batch(hparams: dict[str, Any], processes: int) -> int:
    """Examples per optimizer step of resolved ``hparams`` on ``processes`` processes."""
    per_device = hparams.get("per_device_train_batch_size") or 1
    return per_device * (hparams.get("gradient_accumulation_steps") or 1) * processes


def describe(resolved: Layout, batches: dict[str, tuple[dict[str, Any], int | None]]) -> str:
    """The plan's summary of the layout: GPU tags, shards, and each training's batch.

    ``batches``: name → (resolved hparams, the recipe's global_batch_size or None).
    """
    lines = [
        f"node: {resolved.gpus} GPU(s): trainings take {resolved.train_gpu} GPU(s)"
        f" × {resolved.nodes} node(s) ({resolved.processes} process(es)); generating steps run"
        f" as {resolved.shards} shard job(s) of {resolved.generate_gpu} GPU(s)"
    ]
    for name, (hparams, recipe) in batches.items():
        per_device = hparams.get("per_device_train_batch_size") or 1
        accumulation = hparams.get("gradient_accumulation_steps") or 1
        total = global_batch(hparams, resolved.processes)
        kept = (
            f" (the recipe's {recipe})"
            if recipe == total
            else f" (NOT the recipe's {recipe}: gradient_accumulation_steps is set)"
            if recipe is not None
            else ""
        )
        lines.append(
            f"  {name}: global batch {total}{kept} = {per_device} per device"
            f" × {accumulation} accumulation × {resolved.processes} process(es)"
        )
    return "\n".join(lines)
