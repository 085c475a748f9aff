"""No training step is applied with a loss or a gradient that is not finite.

Every training we run checks each step before its optimizer step: the loss as it is computed,
the gradient (every element of every trainable parameter's gradient, which is what makes its
norm finite) after backward and before the update. The processes agree through one all-reduce,
so all of them act together and none is left waiting in a collective. The stage's
``nonfinite_steps`` option says what happens:

- ``stop`` (the default): the run ends with ``NonFiniteStep``, whose message names the stage,
  the step, the records of the batch and the last complete checkpoint. Nothing after it is
  saved: the stage's model folder is written only when training ends, and the rerun resumes
  from that checkpoint (``sherlock.runtime.resumable_training``).
- ``skip``: the step's update is dropped: backward still runs (so every backend's forward and
  backward stay paired), its gradient is discarded before the optimizer sees it, and the step is
  counted; the stage's summary lists every skipped step with its records.

Where the check runs depends on who steps the optimizer: ``Trainer`` steps it after
``on_pre_optimizer_step`` (``GradientCheck``); DeepSpeed steps inside accelerate's backward, so
our trainer swaps in ``GuardedDeepSpeedEngine``, which checks between DeepSpeed's backward and
its step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from sherlock.runtime.resumable_training import checkpoint_step, last_complete_checkpoint

log = logging.getLogger(__name__)

POLICIES = ("stop", "skip")


class NonFiniteStep(RuntimeError):
    """A step's loss or gradient was not finite (policy ``stop``)."""


def is_finite(value: torch.Tensor | float) -> bool:
    """Every element finite (a float, or a tensor of any size; a DTensor by its own shard)."""
    if not torch.is_tensor(value):
        return math.isfinite(float(value))
    value = value.to_local() if hasattr(value, "to_local") else value
    return bool(torch.isfinite(value.detach()).all()) if value.numel() else True


def gradients_finite(parameters: Iterable[torch.nn.Parameter]) -> bool:
    """Whether this process's gradients of ``parameters`` are all finite (absent ones count)."""
    return all(p.grad is None or is_finite(p.grad) for p in parameters)


def all_finite(local: bool, device: torch.device | str | None = None) -> bool:
    """``local`` of every process (True only when all are); the one collective of a check."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    flag = torch.tensor([1 if local else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def gather_records(records: list[str]) -> list[str]:
    """Every process's record ids, in process order, each once (only on the rare failing step)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        every = [records]
    else:
        every = [None] * dist.get_world_size()
        dist.all_gather_object(every, records)
    return list(dict.fromkeys(record for share in every for record in share or []))


def resume_point(output_dir: str | Path) -> str:
    """The last complete intermediate checkpoint of the run, as a sentence's end."""
    checkpoint = last_complete_checkpoint(Path(output_dir)) if Path(output_dir).is_dir() else None
    if checkpoint is None:
        return "none (a rerun starts again from step 0)"
    return f"{checkpoint} (step {checkpoint_step(checkpoint)}; a rerun resumes from it)"


class FiniteGuard:
    """The policy of one stage's run, and the steps it skipped."""

    def __init__(self, stage: str, policy: str, output_dir: str | Path) -> None:
        if policy not in POLICIES:
            raise ValueError(f"nonfinite_steps must be one of {POLICIES}, not {policy!r}")
        self.stage = stage
        self.policy = policy
        self.output_dir = Path(output_dir)
        self.skipped: list[dict[str, Any]] = []
        self.dropping = False  # the current step's update is to be dropped (policy skip)

    def begin_step(self) -> None:
        self.dropping = False

    def check(
        self,
        local_finite: bool,
        *,
        what: str,
        step: int,
        records: Callable[[], list[str]],
        device: torch.device | str | None = None,
    ) -> bool:
        """True when the step may go on; False when it is to be skipped; raises under ``stop``.

        Every process must call it at the same point (it is a collective). ``records`` is asked
        for only when the step fails.
        """
        if all_finite(local_finite, device):
            return True
        names = gather_records(records())
        listed = ", ".join(names) if names else "(not known)"
        if self.policy == "stop":
            raise NonFiniteStep(
                f"{self.stage}: the {what} of step {step} is not finite; records of the batch: "
                f"{listed}. Nothing of this step or after it was saved. Last good checkpoint: "
                f"{resume_point(self.output_dir)}. Set nonfinite_steps: skip to drop such "
                "batches instead."
            )
        if not self.dropping:  # a step is listed once, for what failed first
            self.skipped.append({"step": step, "what": what, "records": names})
            log.warning(
                "%s: step %d skipped (non-finite %s); records: %s", self.stage, step, what, listed
            )
        self.dropping = True
        return False

    def summary(self) -> dict[str, Any]:
        """What the stage's summary reports: the policy and every skipped step."""
        return {"policy": self.policy, "skipped_steps": self.skipped}


class GradientCheck(TrainerCallback):
    """The gradient check where ``Trainer`` steps the optimizer itself (one process, DDP, FSDP):
    after backward and gradient clipping, before ``optimizer.step``. A gradient with a
    non-finite element has a non-finite norm; clipping turns it into NaNs, never into finite
    values, so the check after it still sees it. Skipping drops the gradient (set to None), so
    the optimizer leaves every parameter and its state as they were."""

    def __init__(
        self,
        guard: FiniteGuard,
        records: Callable[[], list[str]],
        device: Callable[[], torch.device | str | None],
    ) -> None:
        self.guard = guard
        self.records = records
        self.device = device

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        if optimizer is None or _steps_inside_backward(optimizer):
            return
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        # Every process has the same ``dropping`` (set from a collective), so all of them take
        # part in the check below, or none.
        if self.guard.dropping or not self.guard.check(
            gradients_finite(parameters),
            what="gradient",
            step=state.global_step + 1,
            records=self.records,
            device=self.device(),
        ):
            optimizer.zero_grad(set_to_none=True)


def _steps_inside_backward(optimizer: Any) -> bool:
    """accelerate's DeepSpeed optimizer wrapper: DeepSpeed already stepped inside backward."""
    return type(optimizer).__name__ == "DeepSpeedOptimizerWrapper"


def deepspeed_gradients_finite(engine: Any) -> bool:
    """This process's share of the gradient, between DeepSpeed's backward and its step: the local
    partition under ZeRO-3 (``safe_get_local_grad``), the full gradient otherwise."""
    from deepspeed.utils import safe_get_full_grad, safe_get_local_grad

    for parameter in engine.module.parameters():
        if not parameter.requires_grad:
            continue
        grad = (
            safe_get_local_grad(parameter)
            if hasattr(parameter, "ds_id")
            else safe_get_full_grad(parameter)
        )
        if grad is not None and not is_finite(grad):
            return False
    return True


def guarded_deepspeed_engine(
    wrapped: Any,
    guard: FiniteGuard,
    step: Callable[[], int],
    records: Callable[[], list[str]],
    device: Callable[[], torch.device | str | None],
) -> Any:
    """accelerate's ``DeepSpeedEngineWrapper`` of ``wrapped.engine`` with the gradient check
    between DeepSpeed's backward and its optimizer step (accelerate calls both in one go)."""
    from accelerate.utils import DeepSpeedEngineWrapper

    class GuardedDeepSpeedEngine(DeepSpeedEngineWrapper):
        def backward(self, loss: torch.Tensor, sync_gradients: bool = True, **kwargs: Any) -> None:
            self.engine.set_gradient_accumulation_boundary(is_boundary=sync_gradients)
            self.engine.backward(loss, **kwargs)
            if not sync_gradients:
                return
            if not guard.dropping and guard.check(
                deepspeed_gradients_finite(self.engine),
                what="gradient",
                step=step(),
                records=records,
                device=device(),
            ):
                self.engine.step()
            else:
                # As DeepSpeed skips an overflowing fp16 step: release the parameters ZeRO-3
                # still holds gathered (its step would), drop the gradient, no update.
                self.engine.empty_partition_cache()
                self.engine.optimizer.zero_grad(set_to_none=True)  # ZeRO's: no accumulation
                self.engine.zero_grad()

    return GuardedDeepSpeedEngine(wrapped.engine)
