"""Which parts of a vision-language model the preference stages leave untouched.

The keys are LLaMA-Factory's (``freeze_vision_tower``, ``freeze_multi_modal_projector``,
``freeze_language_model``), and so is the list of module names per architecture: its registry of
composite models (``llamafactory.model.model_utils.visual``) knows Qwen2-VL's ``visual.blocks``
and ``visual.merger``, Llama-3.2-Vision's ``vision_model`` and ``multi_modal_projector``, and the
other models it trains. A parameter is frozen as LLaMA-Factory's full fine-tuning freezes it
(its name contains one of the forbidden module names), so Stage I and the preference stages
train the same parameters when given the same keys.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def forbidden_modules(
    model_type: str, vision_tower: bool, projector: bool, language_model: bool
) -> set[str]:
    """The module names LLaMA-Factory freezes for ``model_type`` under these keys.

    Raises ValueError when something is to be frozen in a model LLaMA-Factory does not know:
    training it all instead would silently differ from what the config asks.
    """
    if not (vision_tower or projector or language_model):
        return set()
    # Imported here: it loads LLaMA-Factory, which a run that freezes nothing does not need.
    from llamafactory.model.model_utils.visual import COMPOSITE_MODELS, get_forbidden_modules

    if model_type not in COMPOSITE_MODELS:
        raise ValueError(
            f"cannot freeze parts of a {model_type!r} model: LLaMA-Factory's registry of "
            "vision-language models does not know it; set the preference freeze_* keys to false"
        )
    keys = SimpleNamespace(
        freeze_vision_tower=vision_tower,
        freeze_multi_modal_projector=projector,
        freeze_language_model=language_model,
    )
    return get_forbidden_modules(SimpleNamespace(model_type=model_type), keys)


def freeze(model: Any, vision_tower: bool, projector: bool, language_model: bool) -> list[str]:
    """Turn off ``requires_grad`` of the parameters of the forbidden modules; their names.

    A frozen parameter gets no gradient and, since ``Trainer`` (and DeepSpeed) build the
    optimizer from trainable parameters only, no optimizer state.
    """
    modules = forbidden_modules(model.config.model_type, vision_tower, projector, language_model)
    frozen = []
    for name, parameter in model.named_parameters():
        if any(module in name for module in modules):
            parameter.requires_grad_(False)
            frozen.append(name)
    if modules and not frozen:
        raise ValueError(
            f"none of the modules {sorted(modules)} is in the {model.config.model_type} model: "
            "nothing was frozen"
        )
    return frozen
