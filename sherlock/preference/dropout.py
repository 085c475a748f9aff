"""Dropout off in the preference stages, as TRL's DPO trainer turns it off (``disable_dropout``).

The Sherlock objective compares log-probabilities of the policy with those of the reference:
noise from dropout in either side would enter every Δ. TRL's own helper sets ``p = 0`` on the
``torch.nn.Dropout`` modules only; transformers' attention layers (Qwen2-VL, Qwen2.5-VL,
Llama-3.2-Vision, ...) apply their attention dropout as a float attribute of the module instead
(``attention_dropout``, ``dropout``), so those are set to 0 too. The checkpoint's config is not
changed: a model saved after training keeps the values it was loaded with.
"""

from __future__ import annotations

import torch

_DROPOUT_MODULES = (
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.Dropout3d,
    torch.nn.AlphaDropout,
    torch.nn.FeatureAlphaDropout,
)


def disable_dropout(model: torch.nn.Module) -> int:
    """Set every dropout probability in ``model`` to 0; the number of places changed.

    A place is a torch dropout module (``Dropout``, ``Dropout1d`` to ``3d``, the alpha ones) with
    p > 0, or a float attribute > 0 of a module whose name contains "dropout".
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, _DROPOUT_MODULES):
            if module.p > 0:
                module.p = 0.0
                changed += 1
            continue
        for name, value in list(vars(module).items()):
            if "dropout" in name and type(value) is float and value > 0:
                setattr(module, name, 0.0)
                changed += 1
    return changed
