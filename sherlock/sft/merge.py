"""Merged models of the LoRA stages: adapters merged into the model they trained on, with
LLaMA-Factory's export (``llamafactory-cli export``), on the CPU.

A LoRA stage (``finetuning_type: lora``, Stage I or a preference stage) trains an adapter,
``models/<stage>_adapter/``; every later step reads a plain model, ``models/<stage>/``, written
here. The merge starts from the chain's root (the base model, or the model of a stage trained in
full) and merges, in order, the adapters of the LoRA stages from there up to the stage. Every
merge before the last is the same computation that made the model the next stage trained on, so
a merged model can always be made again from its inputs alone, without retraining anything
(``intermediates.keep_merged_models: false`` deletes merged models once read; rules/lora.smk).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from sherlock.runtime import atomic
from sherlock.runtime.resumable_training import finalise
from sherlock.runtime.safe_loading import require_safetensors

MERGE_FILE = "sherlock_merge.json"
# Written by LLaMA-Factory's export for Ollama; not part of a Hugging Face model folder.
_OLLAMA_FILE = "Modelfile"
DTYPES = ("float32", "bfloat16", "float16")


def stored_dtype(model: str, trust_remote_code: bool = False) -> str:
    """The dtype the model's weights are stored in (its config's, float32 when it names none).

    The merge is computed and written in it: LLaMA-Factory's ``infer_dtype: auto`` would choose
    by the device the export runs on (bfloat16 on a GPU, float32 on a CPU).
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    name = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    return name if name in DTYPES else "float32"


def export_config(
    model: str,
    adapters: list[str],
    template: str,
    dtype: str,
    export_dir: str | Path,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """LLaMA-Factory's export run file: ``adapters`` merged in order into ``model``."""
    return {
        "model_name_or_path": model,
        "adapter_name_or_path": ",".join(str(adapter) for adapter in adapters),
        "template": template,
        "finetuning_type": "lora",
        "infer_dtype": dtype,
        "export_dir": str(export_dir),
        "export_device": "cpu",  # the same numbers wherever it runs; no GPU is held
        "trust_remote_code": trust_remote_code,
    }


def check_adapter(folder: str | Path) -> None:
    """Refuse a folder that is not a finished LoRA adapter in safetensors."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise ValueError(f"{folder}: no adapter_config.json, not a LoRA adapter folder")
    if not (folder / "adapter_model.safetensors").is_file():
        raise ValueError(f"{folder}: no adapter_model.safetensors (only safetensors are read)")


def merge_adapters(
    model: str,
    adapters: list[str],
    final_dir: str | Path,
    template: str,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Merge ``adapters`` in order into ``model`` and move the merged folder into place.

    The folder appears complete or not at all (written in ``<final>.merge.partial``); it holds
    the model, its tokenizer and processor, and ``sherlock_merge.json`` saying what made it.
    """
    if not adapters:
        raise ValueError("no adapter to merge")
    require_safetensors(model)
    for adapter in adapters:
        check_adapter(adapter)
    final = Path(final_dir)
    scratch = final.with_name(final.name + ".merge.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    dtype = stored_dtype(model, trust_remote_code)
    settings = export_config(model, adapters, template, dtype, scratch, trust_remote_code)
    run_file = scratch / "sherlock_export.yaml"  # removed before the folder is moved into place
    atomic.write_yaml(run_file, settings)
    cli = shutil.which("llamafactory-cli", path=str(Path(sys.executable).parent)) or shutil.which(
        "llamafactory-cli"
    )
    if cli is None:
        raise RuntimeError("llamafactory-cli is not installed in this environment")
    # On the CPU (export_device): no device is touched, so a merge runs beside a GPU job.
    env = {**os.environ, "DISABLE_VERSION_CHECK": "1", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([cli, "export", str(run_file)], check=True, env=env)
    run_file.unlink()
    if not (scratch / "config.json").is_file():
        raise RuntimeError(f"LLaMA-Factory's export finished without a model in {scratch}")
    (scratch / _OLLAMA_FILE).unlink(missing_ok=True)
    summary = {
        "model": model,
        "adapters": [str(adapter) for adapter in adapters],
        "template": template,
        "dtype": dtype,
        "tool": "llamafactory-cli export",
        "export": {**settings, "export_dir": str(final)},
    }
    atomic.write_json(scratch / MERGE_FILE, summary, indent=2)
    finalise(scratch, final)
    return summary
