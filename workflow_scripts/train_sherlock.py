"""Sherlock preference training from a rendered run file; the checkpoint appears only when done.

With more than one visible GPU the script starts itself again under ``torchrun``, one process per
GPU (as ``llamafactory-cli train`` does for Stage I), unless it already runs under a launcher.
The launching process decides once whether to resume, and tells every rank. With ``--nodes N``
(inside a SLURM job) it then starts itself on every node (``sherlock.runtime.multinode``),
where each copy runs ``torchrun`` across the nodes. ``--report-to`` and ``--tracking-dir``
(config ``tracking``) send the curves, live, to the tracker (``sherlock.runtime.tracking``).
``--launch`` lays how it runs (a JSON object of run-file keys: scratch folder, DeepSpeed,
per-device batch, checkpointing, ...) over the rendered file, which holds only what the model
depends on; ``--force-torchrun`` starts torchrun for one GPU too (DeepSpeed needs it).
"""

import argparse
import json
import os
import sys

from sherlock.preference.run import distributed_relaunch, prepare_run, train_from_file
from sherlock.runtime.finite_guard import NonFiniteStep
from sherlock.runtime.multinode import across_nodes
from sherlock.runtime.process_group import close_process_group
from sherlock.runtime.resumable_training import checkpoint_step
from sherlock.runtime.step_summary import stage_summary
from sherlock.runtime.tracking import add_tracking_arguments, tracking_from_args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_file", help="YAML: training arguments + model/dataset keys")
    parser.add_argument("--model-dir", required=True, help="final checkpoint folder")
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
    parser.add_argument("--resume-from", default=None, help=argparse.SUPPRESS)  # set for ranks
    args = parser.parse_args()
    tracking = tracking_from_args(args)
    launch = json.loads(args.launch) if args.launch else None
    resume_from = args.resume_from
    if "LOCAL_RANK" not in os.environ:
        argv = [sys.executable, *sys.argv]
        if "NODE_RANK" not in os.environ:  # the job's own process: decide, then start the nodes
            resume_from = prepare_run(args.run_file, args.resume, launch)
            tracking.start(checkpoint_step(resume_from) if resume_from else None)
            argv += ["--resume-from", str(resume_from)] if resume_from else []
            if args.nodes > 1:
                command = across_nodes(args.nodes, argv, os.environ)
                os.execvp(command[0], command)
        relaunch = distributed_relaunch(argv[1:], os.environ, force=args.force_torchrun)
        if relaunch is not None:
            os.execvp(relaunch[0], relaunch)
    try:
        summary = train_from_file(args.run_file, args.model_dir, resume_from, tracking, launch)
    except NonFiniteStep as error:
        # Every process stops at the same step; one clean message, no traceback per rank.
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"error: {error}", file=sys.stderr, flush=True)
        close_process_group()
        sys.exit(1)
    skipped = summary["nonfinite_steps"]["skipped_steps"]
    stage_summary(
        f"train {os.path.basename(os.path.normpath(args.model_dir))}",
        f"{summary['records']} preference records, mean training loss "
        f"{summary['train_loss']:.4f}"
        + (f", {len(skipped)} non-finite steps skipped" if skipped else "")
        + f" -> {args.model_dir}",
    )
    close_process_group()


if __name__ == "__main__":
    main()
