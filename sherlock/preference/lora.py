"""LoRA in the preference stages (``finetuning_type: lora``), through peft.

Only the adapter trains. It goes on the layers LLaMA-Factory's LoRA adapts in Stage I under the
same keys (``lora_target: all`` = every linear layer but the LM head and the projector, and the
vision tower's only when ``freeze_vision_tower`` is off; a comma list = module names matched as
LLaMA-Factory matches them; the freeze keys take their modules out), found with LLaMA-Factory's
own functions, so Stage I and the preference stages adapt the same layers. A fresh adapter's
second matrix is zero: the policy starts as exactly the model it starts from.

The reference is the same weights with the adapter off (peft's ``disable_adapter``, as TRL's DPO
trainer does): no second copy of the model, whether the reference log-probabilities are
precomputed or computed on the fly. The trained adapter is saved (``adapter_config.json``,
``adapter_model.safetensors``) and merged into a plain model by a job of its own
(``sherlock.sft.merge``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any


@dataclass(frozen=True)
class LoraSettings:
    """The LoRA keys of a run (LLaMA-Factory's names)."""

    rank: int
    alpha: float
    dropout: float
    target: str


def target_modules(
    model: Any, target: str, vision_tower: bool, projector: bool, language_model: bool
) -> list[str]:
    """The modules an adapter goes on, chosen as LLaMA-Factory chooses them for Stage I.

    Raises ValueError when nothing matches ``target`` (a misspelt module name would otherwise
    train nothing, or fail deep inside peft).
    """
    from llamafactory.model.model_utils.misc import find_all_linear_modules
    from llamafactory.model.model_utils.visual import patch_target_modules

    names = [name.strip() for name in target.split(",") if name.strip()]
    if names == ["all"]:
        names = find_all_linear_modules(model, vision_tower)
    keys = SimpleNamespace(
        freeze_vision_tower=vision_tower,
        freeze_multi_modal_projector=projector,
        freeze_language_model=language_model,
    )
    modules = patch_target_modules(model, keys, names)
    present = {name for name, _ in model.named_modules()}
    found = [m for m in modules if m in present or any(n.endswith(f".{m}") for n in present)]
    if not found:
        raise ValueError(
            f"lora_target {target!r} matches no module of the {model.config.model_type} model "
            "that the freeze keys leave trainable"
        )
    return modules


def add_adapter(
    model: Any, settings: LoraSettings, vision_tower: bool, projector: bool, language_model: bool
) -> Any:
    """``model`` with a fresh LoRA adapter (the only trainable weights)."""
    from peft import LoraConfig, TaskType, get_peft_model

    modules = target_modules(model, settings.target, vision_tower, projector, language_model)
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,  # as LLaMA-Factory's Stage I adapters are saved
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=modules,
    )
    return get_peft_model(model, config)


def load_adapter(model: Any, folder: str) -> Any:
    """``model`` with the adapter of an intermediate checkpoint, to train on (a resumed run)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, folder, is_trainable=True)


def peft_model(model: Any) -> Any | None:
    """The peft model under a DDP/DeepSpeed wrapper, or None when ``model`` has no adapter."""
    inner = getattr(model, "module", model)
    return inner if hasattr(inner, "disable_adapter") and hasattr(inner, "peft_config") else None


def base_model(model: Any) -> Any:
    """The transformers model inside a peft model (its layers carry the adapter), else itself."""
    inner = peft_model(model)
    return inner.get_base_model() if inner is not None else model


@contextmanager
def reference_weights(model: Any) -> Iterator[None]:
    """Within: ``model`` computes the reference. With an adapter, that is the adapter off and no
    dropout (evaluation mode, as the frozen copy of a full run is used); without one, nothing
    changes."""
    inner = peft_model(model)
    if inner is None:
        yield
        return
    was_training = model.training
    model.eval()
    try:
        with inner.disable_adapter():
            yield
    finally:
        model.train(was_training)


def trainable_count(model: Any) -> int:
    """Parameters (numbers) that train; ZeRO-3 keeps a partitioned one's size in ``ds_numel``."""
    return sum(
        getattr(parameter, "ds_numel", parameter.numel())
        for parameter in model.parameters()
        if parameter.requires_grad
    )
