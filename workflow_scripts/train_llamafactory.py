"""Run one LLaMA-Factory training from its rendered YAML; the checkpoint appears only when done.

``--report-to`` and ``--tracking-dir`` (config ``tracking``) send the curves, live, to the
tracker (``sherlock.runtime.tracking``). ``--launch`` lays how it runs (a JSON object of run-file
keys: scratch folder, DeepSpeed, per-device batch, checkpointing, ...) over the rendered file,
which holds only what the model depends on.
"""

import argparse
import json
import os

import yaml

from sherlock.runtime.step_summary import mean_training_loss, stage_summary
from sherlock.runtime.tracking import add_tracking_arguments, tracking_from_args
from sherlock.sft.llamafactory import run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--yaml", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue an interrupted attempt from its last complete intermediate checkpoint",
    )
    parser.add_argument("--nodes", type=int, default=1, help="nodes of this SLURM job to train on")
    parser.add_argument("--launch", default=None, help="JSON: run-file keys of how it runs")
    parser.add_argument(
        "--force-torchrun",
        action="store_true",
        help="start under torchrun with one GPU too (DeepSpeed needs its process group)",
    )
    add_tracking_arguments(parser)
    args = parser.parse_args()
    run_training(
        args.yaml,
        args.model_dir,
        resume=args.resume,
        nodes=args.nodes,
        tracking=tracking_from_args(args),
        launch=json.loads(args.launch) if args.launch else None,
        force_torchrun=args.force_torchrun,
    )
    with open(os.path.join(args.model_dir, "all_results.json"), encoding="utf-8") as handle:
        results = json.load(handle)
    # From the whole logged history: all_results.json's train_loss is wrong after a resume.
    with open(os.path.join(args.model_dir, "trainer_state.json"), encoding="utf-8") as handle:
        loss = mean_training_loss(json.load(handle).get("log_history", []))
    with open(args.yaml, encoding="utf-8") as handle:
        method = "LoRA" if yaml.safe_load(handle).get("finetuning_type") == "lora" else "full"
    # Steps the guard skipped (nonfinite_steps: skip), listed by sherlock.sft.launch.
    skipped_file = os.path.join(args.model_dir, "sherlock_nonfinite_steps.json")
    skipped = []
    if os.path.isfile(skipped_file):
        with open(skipped_file, encoding="utf-8") as handle:
            skipped = json.load(handle)["skipped_steps"]
    stage_summary(
        f"train {os.path.basename(os.path.normpath(args.model_dir))}",
        f"LLaMA-Factory SFT ({method}), {results.get('epoch', '?')} epochs, mean training loss "
        f"{loss:.4f}"
        + (f", {len(skipped)} non-finite steps skipped" if skipped else "")
        + f" -> {args.model_dir}",
    )


if __name__ == "__main__":
    main()
