"""Loading models safely: safetensors weights only, remote code only where the config opts in.

Pickled weights (``pytorch_model.bin``, ``*.pt``) can run arbitrary code when unpickled, so no
model is ever loaded from them; a folder holding only such files is refused with a message
saying how to convert it. ``trust_remote_code`` (code shipped inside a model repository) stays
off unless the configuration turns it on for that model (``base_model.trust_remote_code``,
``online.judge.trust_remote_code``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PICKLED_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class UnsafeModelError(ValueError):
    """A model folder whose weights could only be loaded by unpickling them."""


def require_safetensors(path: str | os.PathLike[str]) -> None:
    """Refuse a local model folder without ``*.safetensors`` weights.

    A hub id is not checked here: every load passes ``use_safetensors=True``, so transformers
    fetches and reads safetensors files only.
    """
    folder = Path(path)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLED_WEIGHT_SUFFIXES)
    found = f" (found pickled weights: {', '.join(pickled)})" if pickled else ""
    raise UnsafeModelError(
        f"{folder}: no *.safetensors weights{found}. Pickled weights can execute code when "
        "loaded and are never read; convert the model once, in an environment you trust, with "
        "model.save_pretrained(folder, safe_serialization=True)."
    )


def model_load_kwargs(path: str | os.PathLike[str], trust_remote_code: bool) -> dict[str, Any]:
    """Keywords of every ``from_pretrained`` of model weights (after checking the folder)."""
    require_safetensors(path)
    return {"use_safetensors": True, "trust_remote_code": trust_remote_code}
