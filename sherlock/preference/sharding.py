"""How the preference stages shard the model: DeepSpeed ZeRO-3, or PyTorch FSDP, or neither.

Both are ``transformers.Trainer``'s own options, under its own names: ``deepspeed`` (a DeepSpeed
JSON file) and ``fsdp`` with ``fsdp_config`` (the sharding options, e.g. ``full_shard auto_wrap``,
and a JSON file of FSDP settings; accelerate 1.11 drives it). One run uses at most one of them.

ZeRO-3 over gloo (two or more CPU processes) with DeepSpeed 0.18.2 races: a blocking gather of
several parameters (``_allgather_params_coalesced``) starts one asynchronous all-gather per
parameter and waits only for the last. On CUDA every collective runs in one stream, in order,
and DeepSpeed then synchronises the device, so the last one finishing means all have. Gloo runs
each on its own background thread, in no order, and DeepSpeed's CPU accelerator has nothing to
synchronise: the parameter is read while its gather still writes it, uninitialised memory
included (deepspeedai/DeepSpeed#8539, merged after 0.18.2). Three of our paths make such a
gather: the small "persistent" parameters after initialisation and after every step, loading a
checkpoint into a model built under ``zero.Init``, and consolidating the weights to save them.
On gloo, and only there, this module steers around all three: no persistent parameters
(``stage3_param_persistence_threshold: 0``), loading the whole model in each process (DeepSpeed
then partitions it without a gather), and saving from one parameter's gather at a time (a single
parameter's gather is a blocking collective). docs/cluster.md has the finding.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


def check_one_backend(settings: dict[str, Any], where: str = "the run file") -> None:
    """DeepSpeed and FSDP both shard the model; a run names at most one, and FSDP's settings
    only with FSDP itself."""
    if settings.get("deepspeed") and settings.get("fsdp"):
        raise ValueError(f"{where} sets both deepspeed and fsdp: choose one sharded backend")
    if settings.get("fsdp_config") and not settings.get("fsdp"):
        raise ValueError(f"{where} sets fsdp_config without fsdp (e.g. fsdp: full_shard auto_wrap)")


def runs_on_gloo(use_cpu: bool = False) -> bool:
    """Whether the processes talk over gloo: on the CPU, the only backend there."""
    return use_cpu or not torch.cuda.is_available()


def _zero_stage(config: dict[str, Any]) -> int:
    return int((config.get("zero_optimization") or {}).get("stage", 0) or 0)


def deepspeed_config(value: str | dict[str, Any], gloo: bool) -> str | dict[str, Any]:
    """The DeepSpeed config to train with: as given, except ZeRO-3 on gloo, which gets no
    persistent parameters (their gather at start and after every step is the racy one)."""
    if not gloo:
        return value
    config = (
        json.loads(Path(value).read_text(encoding="utf-8"))
        if isinstance(value, str)
        else copy.deepcopy(value)
    )
    if _zero_stage(config) != 3:
        return value
    config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    return config


def zero3_on_gloo(args: Any) -> bool:
    """Whether ``args`` (training arguments) run DeepSpeed ZeRO-3 over gloo."""
    config = getattr(args, "hf_deepspeed_config", None)
    return (
        config is not None
        and config.is_zero3()
        and runs_on_gloo(bool(getattr(args, "use_cpu", False)))
    )


@contextlib.contextmanager
def loading_whole_model(args: Any) -> Iterator[None]:
    """``from_pretrained`` inside builds the whole model in this process instead of under
    ``zero.Init`` (whose loading gathers several parameters at once) when ZeRO-3 runs on gloo;
    DeepSpeed partitions it when training starts. Elsewhere a no-op: on GPUs ``zero.Init`` is
    what lets an 11B model load at all."""
    if not zero3_on_gloo(args):
        yield
        return
    from transformers.integrations.deepspeed import (
        set_hf_deepspeed_config,
        unset_hf_deepspeed_config,
    )

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        set_hf_deepspeed_config(args.hf_deepspeed_config)


def zero3_full_state_dict(model: torch.nn.Module, on_main: bool) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of a ZeRO-3 model, whole, gathered one parameter at a time
    (every process takes part; only ``on_main`` keeps the copies). Buffers are not partitioned."""
    import deepspeed

    state: dict[str, torch.Tensor] = {}
    for name, parameter in model.named_parameters():
        with deepspeed.zero.GatheredParameters([parameter], modifier_rank=None):
            if on_main:
                state[name] = parameter.detach().cpu().clone()
    if on_main:
        persistent = dict(model.named_buffers())
        for name in model.state_dict(keep_vars=True):
            if name not in state and name in persistent:
                state[name] = persistent[name].detach().cpu().clone()
    return state
