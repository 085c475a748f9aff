"""LLaMA-Factory run configuration: the YAML and ``dataset_info.json`` a user can read and rerun.

Stage I is plain LLaMA-Factory full SFT (docs/method.md §3); we render its inputs and launch it as
``llamafactory-cli train`` does, through ``sherlock.sft.launch``, which hands LLaMA-Factory our
guard against non-finite steps as a callback (its only way in).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from sherlock.runtime import atomic
from sherlock.runtime.multinode import across_nodes
from sherlock.runtime.resumable_training import (
    RESUME_FILE,
    checkpoint_keys,
    checkpoint_step,
    finalise,
    prepare_scratch,
    run_fingerprint,
)
from sherlock.runtime.safe_loading import require_safetensors
from sherlock.runtime.tracking import Tracking

# Keys we always set: what makes a run a full SFT that leaves one clean Hugging Face folder.
_FIXED = {
    "stage": "sft",
    "do_train": True,
    "finetuning_type": "full",
    "overwrite_cache": True,
    "overwrite_output_dir": True,  # we decide about resuming (sherlock.runtime.resumable_training)
    "plot_loss": False,
    # The tracker is chosen at launch (run_training's ``tracking``), so the run file, which
    # decides whether a checkpoint is retrained or resumed, does not depend on it.
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
    checkpointing: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
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
        **checkpoint_keys(checkpointing or {}),
        "trust_remote_code": trust_remote_code,  # off unless base_model.trust_remote_code
    }
    for key, value in hparams.items():
        if value is not None:  # null in our config = LLaMA-Factory's default
            config[key] = value
    return config


def write_run_files(
    yaml_path: str | Path, info_path: str | Path, config: dict[str, Any], info: dict[str, Any]
) -> None:
    atomic.write_json(info_path, info, indent=2)
    atomic.write_yaml(yaml_path, config)


def dataset_files(config: dict[str, Any]) -> list[Path]:
    """The data files a rendered run trains on (its datasets' ``file_name`` entries)."""
    info = json.loads((Path(config["dataset_dir"]) / "dataset_info.json").read_text("utf-8"))
    names = [name.strip() for name in str(config["dataset"]).split(",")]
    return [Path(info[name]["file_name"]) for name in names]


def run_training(
    yaml_path: str | Path,
    final_dir: str | Path,
    resume: bool = True,
    nodes: int = 1,
    tracking: Tracking | None = None,
) -> None:
    """Train with LLaMA-Factory (``sherlock.sft.launch``) in the scratch folder, then move the
    model into place.

    The checkpoint target is complete or absent. With ``resume``, a rerun of the same run after
    an interruption continues from its last complete intermediate checkpoint. With ``nodes`` > 1
    (inside a SLURM job) ``llamafactory-cli`` starts on every node and runs ``torchrun`` across
    them (``sherlock.runtime.multinode``). ``tracking`` (config ``tracking``) overrides the
    run file's ``report_to`` on the command line and names the tracker's folder.
    """
    config = yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8"))
    scratch = Path(config["output_dir"])
    final_dir = Path(final_dir)
    if scratch.resolve() == final_dir.resolve():
        raise ValueError("output_dir must be a scratch folder distinct from the final checkpoint")
    if importlib.util.find_spec("llamafactory") is None:
        raise RuntimeError("LLaMA-Factory is not installed in this environment")
    require_safetensors(config["model_name_or_path"])
    fingerprint = run_fingerprint(config, dataset_files(config), config["model_name_or_path"])
    checkpoint = prepare_scratch(scratch, fingerprint, resume)
    run_file = Path(yaml_path)
    if checkpoint is not None:
        run_file = scratch / RESUME_FILE
        # Weights through from_pretrained (with the model's key mapping): Trainer's resume alone
        # loads Qwen2-VL checkpoints without it in transformers 5.6 and restores no weight.
        resumed = {"model_name_or_path": str(checkpoint), "resume_from_checkpoint": str(checkpoint)}
        atomic.write_yaml(run_file, {**config, **resumed})
    command = [sys.executable, "-m", "sherlock.sft.launch", "train", str(run_file)]
    env = {**os.environ, "DISABLE_VERSION_CHECK": "1"}
    # The launcher is our module: its processes import this checkout's package.
    checkout = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [checkout, env.get("PYTHONPATH")]))
    if tracking is not None:
        tracking.start(checkpoint_step(checkpoint) if checkpoint is not None else None)
        command.append(f"report_to={tracking.report_to}")  # LLaMA-Factory's key=value override
        env.update(tracking.environment())
    if nodes > 1:
        env["FORCE_TORCHRUN"] = "1"  # torchrun even with one GPU per node: it joins the nodes
    subprocess.run(across_nodes(nodes, command, env), check=True, env=env)
    if not (scratch / "config.json").is_file():
        raise RuntimeError(f"LLaMA-Factory finished without saving a model in {scratch}")
    finalise(scratch, final_dir)
