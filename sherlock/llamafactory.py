"""LLaMA-Factory run configuration: the YAML and ``dataset_info.json`` a user can read and rerun.

Stage I is plain LLaMA-Factory full SFT (METHOD.md §3); we only render its inputs and launch
``llamafactory-cli train`` as installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

# Keys we always set: what makes a run a full SFT that leaves one clean Hugging Face folder.
_FIXED = {
    "stage": "sft",
    "do_train": True,
    "finetuning_type": "full",
    "trust_remote_code": False,
    "overwrite_cache": True,
    "overwrite_output_dir": True,
    "save_strategy": "no",  # one final save; intermediate checkpoints would land in the target
    "plot_loss": False,
    "report_to": "none",
}


def dataset_info(name: str, file_name: str | Path) -> dict[str, Any]:
    """One dataset entry in LLaMA-Factory's sharegpt formatting (our rows' column names)."""
    return {
        name: {
            "file_name": str(Path(file_name).resolve()),
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "images": "images"},
        }
    }


def train_config(
    *,
    model: str,
    dataset: str,
    dataset_dir: str | Path,
    output_dir: str | Path,
    template: str,
    hparams: dict[str, Any],
    media_dir: str | Path,
    seed: int,
) -> dict[str, Any]:
    """The full LLaMA-Factory training YAML for one SFT run."""
    config = {
        "model_name_or_path": model,
        "template": template,
        "dataset": dataset,
        "dataset_dir": str(dataset_dir),
        "media_dir": str(media_dir),
        "output_dir": str(output_dir),
        "seed": seed,
        **_FIXED,
    }
    for key, value in hparams.items():
        if value is not None:  # null in our config = LLaMA-Factory's default
            config[key] = value
    return config


def write_run_files(
    yaml_path: str | Path, info_path: str | Path, config: dict[str, Any], info: dict[str, Any]
) -> None:
    Path(info_path).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    Path(yaml_path).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def run_training(yaml_path: str | Path, final_dir: str | Path) -> None:
    """Train with ``llamafactory-cli`` into a scratch folder, then move it into place.

    The checkpoint target is complete or absent: an interrupted run leaves only the scratch
    folder, which the next attempt removes.
    """
    config = yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8"))
    scratch = Path(config["output_dir"])
    final_dir = Path(final_dir)
    if scratch.resolve() == final_dir.resolve():
        raise ValueError("output_dir must be a scratch folder distinct from the final checkpoint")
    shutil.rmtree(scratch, ignore_errors=True)
    cli = shutil.which("llamafactory-cli", path=str(Path(sys.executable).parent)) or shutil.which(
        "llamafactory-cli"
    )
    if cli is None:
        raise RuntimeError("llamafactory-cli is not installed in this environment")
    env = {**os.environ, "DISABLE_VERSION_CHECK": "1"}
    subprocess.run([cli, "train", str(yaml_path)], check=True, env=env)
    if not (scratch / "config.json").is_file():
        raise RuntimeError(f"LLaMA-Factory finished without saving a model in {scratch}")
    shutil.rmtree(final_dir, ignore_errors=True)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch.rename(final_dir)
