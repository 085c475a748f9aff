"""Stage I's training processes: LLaMA-Factory's own ``run_exp``, given our guard as a callback.

    python -m sherlock.sft.launch train.yaml [key=value ...]

does what ``llamafactory-cli train train.yaml`` does (LLaMA-Factory 0.9.5's launcher: one
process, or ``torchrun`` over every visible device, or across nodes from ``NNODES``,
``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` when ``FORCE_TORCHRUN`` is set), except that each
process calls ``run_exp(args, callbacks=[...])``, the one way LLaMA-Factory takes callbacks. The
callback is the guard against non-finite steps (``sherlock.runtime.finite_guard``); the run file's
``nonfinite_steps`` (ours, so it is taken out before LLaMA-Factory reads the rest) sets its policy.

LLaMA-Factory computes the loss out of a callback's reach, so the guard checks the gradient: a
non-finite cross-entropy loss gives a non-finite gradient. Without DeepSpeed it checks before the
optimizer step (stop or skip); under DeepSpeed, whose step runs inside backward, it checks the
norm DeepSpeed computed in that step, so the run stops before anything of it is saved, and
``skip`` is refused (sherlock.config).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback

from sherlock.runtime.finite_guard import FiniteGuard, GradientCheck, is_finite

OURS = ("nonfinite_steps",)


def torchrun_command(
    argv: list[str], environ: Mapping[str, str], device_count: int
) -> list[str] | None:
    """The ``torchrun`` command LLaMA-Factory's launcher would run, or None for one process."""
    if "LOCAL_RANK" in environ:
        return None
    forced = environ.get("FORCE_TORCHRUN", "0").lower() in ("1", "true", "y", "yes")
    if not forced and device_count <= 1:
        return None
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    return [
        torchrun,
        f"--nnodes={environ.get('NNODES', '1')}",
        f"--node_rank={environ.get('NODE_RANK', '0')}",
        f"--nproc_per_node={environ.get('NPROC_PER_NODE', str(max(device_count, 1)))}",
        f"--master_addr={environ.get('MASTER_ADDR', '127.0.0.1')}",
        f"--master_port={environ.get('MASTER_PORT', str(_free_port()))}",
        "-m",
        "sherlock.sft.launch",
        *argv,
    ]


def _free_port() -> int:
    from llamafactory.extras.misc import find_available_port

    return find_available_port()


def run_arguments(run_file: str | Path, overrides: list[str]) -> tuple[dict[str, Any], str]:
    """LLaMA-Factory's arguments (the run file with ``key=value`` overrides) and our policy."""
    config = yaml.safe_load(Path(run_file).read_text(encoding="utf-8"))
    for item in overrides:
        key, _, value = item.partition("=")
        config[key] = yaml.safe_load(value)
    ours = {key: config.pop(key) for key in OURS if key in config}
    return config, ours.get("nonfinite_steps", "stop")


def step_records(config: dict[str, Any], step: int, world: int) -> list[str]:
    """The ids of the rows step ``step`` (from 1) trains on, when LLaMA-Factory keeps the data
    files' order (``disable_shuffling``): one step takes per-device batch × accumulation ×
    processes consecutive rows. Shuffled, the rows of a step cannot be named here."""
    if not config.get("disable_shuffling"):
        return []
    per_step = (
        int(config.get("per_device_train_batch_size", 8))
        * int(config.get("gradient_accumulation_steps", 1))
        * world
    )
    from sherlock.sft.llamafactory import dataset_files

    rows: list[str] = []
    for path in dataset_files(config):
        rows += [str(row.get("id", "?")) for row in json.loads(path.read_text("utf-8"))]
    if not rows:
        return []
    start = (step - 1) * per_step % len(rows)  # later epochs start again from the first row
    return [rows[(start + i) % len(rows)] for i in range(per_step)]


class DeepSpeedNormCheck(TrainerCallback):
    """Under DeepSpeed: the global gradient norm of the step just taken, checked at step end,
    before the Trainer logs or saves anything of it (policy stop)."""

    def __init__(self, guard: FiniteGuard, records: Any, device: Any) -> None:
        self.guard = guard
        self.records = records
        self.device = device

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        inner = getattr(optimizer, "optimizer", None)
        norm = getattr(inner, "_global_grad_norm", None)  # ZeRO's and DeepSpeed's BF16 optimizers
        if type(optimizer).__name__ != "DeepSpeedOptimizerWrapper" or norm is None:
            return
        self.guard.check(
            is_finite(norm),
            what="gradient norm",
            step=state.global_step,
            records=self.records,
            device=self.device(),
        )


def guard_callbacks(config: dict[str, Any], policy: str) -> list[Any]:
    """The callbacks that guard one Stage I run."""
    output_dir = Path(config["output_dir"])
    stage = output_dir.name.removesuffix(".partial")
    guard = FiniteGuard(stage, policy, output_dir)
    state: dict[str, int] = {"step": 0}

    def world() -> int:
        return int(os.environ.get("WORLD_SIZE", "1"))

    def records() -> list[str]:
        return step_records(config, state["step"], world())

    def device() -> Any:
        import torch

        if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
            return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        return torch.device("cpu")

    class Steps(TrainerCallback):
        def on_step_begin(self, args: Any, trainer_state: Any, control: Any, **kwargs: Any) -> None:
            state["step"] = trainer_state.global_step + 1
            guard.begin_step()

        def on_train_end(self, args: Any, trainer_state: Any, control: Any, **kwargs: Any) -> None:
            if guard.skipped and args.process_index == 0:
                summary = Path(args.output_dir) / "sherlock_nonfinite_steps.json"
                summary.write_text(json.dumps(guard.summary(), indent=2), encoding="utf-8")

    return [
        Steps(),
        GradientCheck(guard, records, device),
        DeepSpeedNormCheck(guard, records, device),
    ]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":  # accepted for llamafactory-cli's form
        argv = argv[1:]
    if not argv:
        raise SystemExit("usage: python -m sherlock.sft.launch train.yaml [key=value ...]")
    from llamafactory.extras.misc import get_device_count

    command = torchrun_command(argv, os.environ, get_device_count())
    if command is not None:
        os.execvp(command[0], command)
    config, policy = run_arguments(argv[0], argv[1:])
    from llamafactory.train.tuner import run_exp

    run_exp(args=config, callbacks=guard_callbacks(config, policy))


if __name__ == "__main__":
    main()
