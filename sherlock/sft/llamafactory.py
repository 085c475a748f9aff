"""LLaMA-Factory run configuration: the YAML and ``dataset_info.json`` a user can read and rerun.

Stage I is plain LLaMA-Factory SFT (docs/method.md §3), full or LoRA (``finetuning_type``); we
render its inputs and launch it as ``llamafactory-cli train`` does, through
``sherlock.sft.launch``, which hands LLaMA-Factory our guard against non-finite steps as a
callback (its only way in). A LoRA run leaves an adapter; ``sherlock.sft.merge`` writes the
merged model.
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

# Keys we always set: what makes a run an SFT that leaves one clean Hugging Face folder (full,
# unless the run's hyper-parameters say finetuning_type: lora).
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


# The run file as it ran (the rendered one with its launch settings), kept beside the model.
LAUNCHED_FILE = "sherlock_launched_run.yaml"


def dataset_info(
    name: str, file_name: str | Path, relative_to: str | Path | None = None
) -> dict[str, Any]:
    """One dataset entry in LLaMA-Factory's sharegpt formatting (our rows' column names). With
    ``relative_to`` (the dataset_info.json's folder, LLaMA-Factory's dataset_dir) the file is
    named relative to it, so the run files stay right when the working directory moves."""
    path = Path(file_name).resolve()
    if relative_to is not None:
        path = Path(os.path.relpath(path, Path(relative_to).resolve()))
    return {
        name: {
            "file_name": str(path),
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "images": "images"},
        }
    }


def train_config(
    *,
    model: str,
    dataset: str,
    dataset_dir: str | Path,
    template: str,
    hparams: dict[str, Any],
    media_dir: str | Path,
    seed: int,
    output_dir: str | Path | None = None,
    checkpointing: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """The LLaMA-Factory training YAML of one SFT run. The workflow renders what the model
    depends on and adds how it runs (``output_dir``, checkpointing, DeepSpeed, per-device batch,
    ...) at launch (``run_training``'s ``launch``); both may be given here too."""
    config = {
        "model_name_or_path": model,
        "template": template,
        "dataset": dataset,
        "dataset_dir": str(dataset_dir),
        "media_dir": str(media_dir),
        **({"output_dir": str(output_dir)} if output_dir is not None else {}),
        "seed": seed,
        **_FIXED,
        **(checkpoint_keys(checkpointing) if checkpointing is not None else {}),
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
    folder = Path(config["dataset_dir"])
    info = json.loads((folder / "dataset_info.json").read_text("utf-8"))
    names = [name.strip() for name in str(config["dataset"]).split(",")]
    return [folder / info[name]["file_name"] for name in names]  # LLaMA-Factory's own join


def run_training(
    yaml_path: str | Path,
    final_dir: str | Path,
    resume: bool = True,
    nodes: int = 1,
    tracking: Tracking | None = None,
    launch: dict[str, Any] | None = None,
    force_torchrun: bool = False,
) -> None:
    """Train with LLaMA-Factory (``sherlock.sft.launch``) in the scratch folder, then move the
    model into place.

    The checkpoint target is complete or absent. With ``resume``, a rerun of the same run after
    an interruption continues from its last complete intermediate checkpoint. With ``nodes`` > 1
    (inside a SLURM job) ``llamafactory-cli`` starts on every node and runs ``torchrun`` across
    them (``sherlock.runtime.multinode``). ``tracking`` (config ``tracking``) overrides the
    run file's ``report_to`` on the command line and names the tracker's folder. ``launch``
    (how it runs: scratch folder, DeepSpeed, per-device batch, workers, checkpointing, ...)
    is laid over the run file; the file that ran is kept beside the model (``LAUNCHED_FILE``).
    ``force_torchrun``: start under torchrun even with one GPU (DeepSpeed needs it).
    """
    config = {**yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8")), **(launch or {})}
    if "output_dir" not in config:
        raise ValueError(f"{yaml_path}: no output_dir in the run file or the launch settings")
    scratch = Path(config["output_dir"])
    final_dir = Path(final_dir)
    if scratch.resolve() == final_dir.resolve():
        raise ValueError("output_dir must be a scratch folder distinct from the final checkpoint")
    if importlib.util.find_spec("llamafactory") is None:
        raise RuntimeError("LLaMA-Factory is not installed in this environment")
    require_safetensors(config["model_name_or_path"])
    fingerprint = run_fingerprint(config, dataset_files(config), config["model_name_or_path"])
    checkpoint = prepare_scratch(scratch, fingerprint, resume)
    lora = config.get("finetuning_type") == "lora"
    run_file = scratch / LAUNCHED_FILE
    atomic.write_yaml(run_file, config)
    if checkpoint is not None:
        run_file = scratch / RESUME_FILE
        # Weights through from_pretrained (with the model's key mapping): Trainer's resume alone
        # loads Qwen2-VL checkpoints without it in transformers 5.6 and restores no weight. A
        # LoRA checkpoint holds the adapter: the same base, the adapter loaded to train on.
        weights = "adapter_name_or_path" if lora else "model_name_or_path"
        resumed = {weights: str(checkpoint), "resume_from_checkpoint": str(checkpoint)}
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
    if nodes > 1 or force_torchrun:
        # torchrun even with one GPU per node: it joins the nodes, and DeepSpeed needs its
        # process group on one GPU too
        env["FORCE_TORCHRUN"] = "1"
    subprocess.run(across_nodes(nodes, command, env), check=True, env=env)
    saved = "adapter_config.json" if lora else "config.json"
    if not (scratch / saved).is_file():
        what = "an adapter" if lora else "a model"
        raise RuntimeError(f"LLaMA-Factory finished without saving {what} in {scratch}")
    finalise(scratch, final_dir)
