"""Run one Sherlock preference training from a YAML file (what the Stage II/III rules render).

    python workflow_scripts/train_sherlock.py run.yaml --model-dir results/models/offline
    accelerate launch workflow_scripts/train_sherlock.py run.yaml --model-dir ...   # GPUs

The YAML holds training arguments (``SherlockConfig``, i.e. TRL's ``DPOConfig`` and ours; the
config's LLaMA-Factory-style names such as ``pref_beta`` are mapped by
``sherlock.preference.arguments``) plus the keys below, which are ours.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file

from sherlock.data.images import PixelLimits, pixel_limits
from sherlock.data.prompts import load_prompt
from sherlock.preference import lora
from sherlock.preference.arguments import SherlockConfig, argument_names
from sherlock.preference.coefficients import Coefficients
from sherlock.preference.records import load_preferences
from sherlock.preference.sharding import (
    check_one_backend,
    deepspeed_config,
    loading_whole_model,
    runs_on_gloo,
)
from sherlock.preference.trainer import PreferenceCollator, PreferenceDataset, SherlockTrainer
from sherlock.runtime import atomic
from sherlock.runtime.resumable_training import (
    REFERENCE_TABLE,
    finalise,
    prepare_scratch,
    run_fingerprint,
)
from sherlock.runtime.safe_loading import model_load_kwargs
from sherlock.runtime.step_summary import mean_training_loss
from sherlock.runtime.tracking import Tracking, tracking_environment

# Keys of the run file that are not TrainingArguments.
RUN_KEYS = (
    "model_name_or_path",
    "dataset",
    "image_root",
    "refine_prompt",
    "perturbation",
    "torch_dtype",
    "trust_remote_code",
    "image_min_pixels",
    "image_max_pixels",
    "image_resample",
)


def image_pixels(ours: dict[str, Any]) -> PixelLimits | None:
    """(min, max) pixels of the training images: Stage I's limits, which the rules render into
    every run file, and the filter when it is not bicubic (``image_resample``); None (images as
    stored) for a run file without them."""
    if ours.get("image_max_pixels") is None:
        return None
    return pixel_limits(
        int(ours.get("image_min_pixels") or 1),
        int(ours["image_max_pixels"]),
        ours.get("image_resample") or "bicubic",
    )


def distributed_relaunch(
    argv: list[str], environ: Mapping[str, str], gpu_count: int | None = None, force: bool = False
) -> list[str] | None:
    """The ``torchrun`` command that reruns ``argv`` once per visible GPU, or None.

    None when at most one GPU is visible on a single node (unless ``force``: DeepSpeed on one
    GPU needs torchrun's process group too), or a launcher (torchrun, accelerate, deepspeed)
    already started this process, which it announces with ``LOCAL_RANK``. On one of several
    nodes (``NNODES`` > 1, set by ``sherlock.runtime.multinode``) torchrun joins the others.
    """
    if "LOCAL_RANK" in environ:
        return None
    if gpu_count is None:
        gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    nodes = int(environ.get("NNODES", "1"))
    if gpu_count <= 1 and nodes == 1 and not force:
        return None
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    per_node = f"--nproc_per_node={max(gpu_count, 1)}"
    if nodes == 1:
        return [torchrun, "--standalone", per_node, *argv]
    return [
        torchrun,
        f"--nnodes={nodes}",
        f"--node_rank={environ['NODE_RANK']}",
        f"--master_addr={environ['MASTER_ADDR']}",
        f"--master_port={environ['MASTER_PORT']}",
        per_node,
        *argv,
    ]


def split_run_config(config: dict[str, Any]) -> tuple[dict[str, Any], SherlockConfig]:
    """The run file's own keys, and its training arguments."""
    ours = {key: config.pop(key) for key in RUN_KEYS if key in config}
    for key in ("model_name_or_path", "dataset", "output_dir"):
        if key not in ours and key not in config:
            raise ValueError(f"the run file lacks {key}")
    if "perturbation" not in ours:
        raise ValueError("the run file lacks perturbation (the config's perturbation section)")
    recipe = config.pop("recipe", None)  # run files of earlier versions repeat the recipe here
    if recipe is not None and recipe != ours["perturbation"].get("recipe"):
        raise ValueError(
            f"recipe {recipe!r} differs from perturbation.recipe "
            f"{ours['perturbation'].get('recipe')!r}: drop the top-level recipe key"
        )
    check_one_backend(config)
    if config.get("deepspeed"):
        config["deepspeed"] = deepspeed_config(
            config["deepspeed"], runs_on_gloo(bool(config.get("use_cpu")))
        )
    try:
        args = SherlockConfig(**argument_names(config))
    except TypeError as error:
        raise ValueError(
            f"the run file has a key that is not a training argument: {error}"
        ) from None
    return ours, args


def coefficients(ours: dict[str, Any], args: SherlockConfig) -> Coefficients:
    """The loss coefficients: β and β_r from the training arguments, the recipe and its
    constants from the run file's perturbation section."""
    return Coefficients.from_perturbation(ours["perturbation"], args.beta, args.beta_refine)


def frozen_count(model: Any, names: list[str]) -> int:
    """Parameters (numbers, not tensors) the freeze keys left untrained; ZeRO-3 partitions a
    parameter and keeps its full size in ``ds_numel``."""
    frozen = set(names)
    return sum(
        getattr(parameter, "ds_numel", parameter.numel())
        for name, parameter in model.named_parameters()
        if name in frozen
    )


# The run file as it ran (the rendered one with its launch settings), kept beside the model.
LAUNCHED_FILE = "sherlock_launched_run.yaml"


def run_config(run_file: str | Path, launch: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run file with ``launch`` (how it runs: scratch folder, DeepSpeed, per-device batch,
    checkpointing, the refine prompt's path, ...) laid over it."""
    config = {**yaml.safe_load(Path(run_file).read_text(encoding="utf-8")), **(launch or {})}
    if "output_dir" not in config:
        raise ValueError(f"{run_file}: no output_dir in the run file or the launch settings")
    return config


def prepare_run(
    run_file: str | Path, resume: bool, launch: Mapping[str, Any] | None = None
) -> Path | None:
    """Ready the run's scratch folder; the intermediate checkpoint to resume from, if any.

    Called once, by the process that launches the ranks, before any of them starts.
    """
    config = run_config(run_file, launch)
    fingerprint = run_fingerprint(config, [config["dataset"]], config["model_name_or_path"])
    checkpoint = prepare_scratch(config["output_dir"], fingerprint, resume)
    atomic.write_yaml(Path(config["output_dir"]) / LAUNCHED_FILE, config)
    return checkpoint


def train_from_file(
    run_file: str | Path,
    model_dir: str | Path,
    resume_from: str | Path | None = None,
    tracking: Tracking | None = None,
    launch: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (from ``resume_from``, an intermediate checkpoint, when given), save a complete
    Hugging Face folder with its processor (a LoRA run: the adapter folder, which a merge job
    turns into a model, ``sherlock.sft.merge``), then move it into place. ``tracking`` (config
    ``tracking``) overrides the run file's ``report_to``: every logged metric, the Sherlock
    losses and each pair's rewards included, reaches the tracker as it is logged. ``launch``:
    how it runs, laid over the run file (``run_config``)."""
    config = run_config(run_file, launch)
    if tracking is not None:
        config["report_to"] = tracking.report_to
    with tracking_environment(tracking or Tracking()):
        return _train(run_file, config, model_dir, resume_from)


def _train(
    run_file: str | Path,
    config: dict[str, Any],
    model_dir: str | Path,
    resume_from: str | Path | None,
) -> dict[str, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor, set_seed

    ours, args = split_run_config(config)
    dtype = getattr(torch, ours.get("torch_dtype") or "float32")
    model_path = ours["model_name_or_path"]
    remote_code = bool(ours.get("trust_remote_code"))
    processor = AutoProcessor.from_pretrained(model_path, trust_remote_code=remote_code)
    scratch, final = Path(args.output_dir), Path(model_dir)
    reference_table = None
    if resume_from is not None and args.precompute_ref_log_probs:
        # The resumed policy is no longer the reference: reuse the table of the first attempt.
        table = scratch / REFERENCE_TABLE
        if table.is_file():
            reference_table = load_file(str(table))["reference_logps"]
        else:
            print(f"no {table}: training restarts from step 0", file=sys.stderr)
            resume_from = None
    # Resuming, the policy's weights come from the checkpoint through from_pretrained: Trainer's
    # own resume loads the state dict without the model's key mapping (transformers 5.6 saves
    # Qwen2-VL under its original key names), which would silently restore nothing. A LoRA
    # checkpoint holds the adapter: the starting model, the checkpoint's adapter on it.
    lora_settings = args.lora
    full_resume = resume_from is not None and lora_settings is None
    policy_path = str(resume_from) if full_resume else model_path
    with loading_whole_model(args):  # ZeRO-3 on the CPU: not under zero.Init (.sharding)
        model = AutoModelForImageTextToText.from_pretrained(
            policy_path, dtype=dtype, **model_load_kwargs(policy_path, remote_code)
        )
    if lora_settings is not None and resume_from is not None:
        model = lora.load_adapter(model, str(resume_from))
    elif lora_settings is not None:
        set_seed(args.seed)  # the adapter's random first matrix: the same run, the same start
        model = lora.add_adapter(
            model,
            lora_settings,
            vision_tower=args.freeze_vision_tower,
            projector=args.freeze_multi_modal_projector,
            language_model=args.freeze_language_model,
        )
    reference = None
    if not args.precompute_ref_log_probs and lora_settings is None:  # LoRA: the adapter off
        reference = AutoModelForImageTextToText.from_pretrained(
            model_path, dtype=dtype, **model_load_kwargs(model_path, remote_code)
        )
    examples = load_preferences(ours["dataset"], ours.get("image_root") or ".")
    dataset = PreferenceDataset(
        examples,
        processor,
        load_prompt("refine", ours.get("refine_prompt")),
        coefficients(ours, args),
        args.max_length,
        image_pixels(ours),
    )
    if reference_table is not None:
        dataset.reference_logps = reference_table
    tokenizer = processor.tokenizer
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    trainer = SherlockTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=PreferenceCollator(pad_id),
        processing_class=processor,
        reference_model=reference,
        stage=Path(model_dir).name,
    )
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    trainer.save_model(str(scratch))
    summary = {
        "records": len(examples),
        "records_without_weight": sum(example.weight is None for example in examples),
        "frozen_parameters": frozen_count(model, trainer.frozen_parameters),
        "finetuning_type": args.finetuning_type,
        "trainable_parameters": lora.trainable_count(model),
        "train_loss": mean_training_loss(trainer.state.log_history),  # resumes included
        "nonfinite_steps": trainer.guard.summary(),
        "log_history": trainer.state.log_history,
        "run_file": str(run_file),
    }
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(scratch))
        atomic.write_json(scratch / "sherlock_training.json", summary)
        finalise(scratch, final)
    return summary
