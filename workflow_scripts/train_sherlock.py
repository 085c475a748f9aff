"""Sherlock preference training from a rendered run file; the checkpoint appears only when done.

With more than one visible GPU the script starts itself again under ``torchrun``, one process per
GPU (as ``llamafactory-cli train`` does for Stage I), unless it already runs under a launcher.
"""

import argparse
import os
import sys

from sherlock.pref_training import distributed_relaunch, train_from_file
from sherlock.stage_log import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_file", help="YAML: training arguments + model/dataset keys")
    parser.add_argument("--model-dir", required=True, help="final checkpoint folder")
    args = parser.parse_args()
    relaunch = distributed_relaunch(sys.argv, os.environ)
    if relaunch is not None:
        os.execvp(relaunch[0], relaunch)
    summary = train_from_file(args.run_file, args.model_dir)
    stage_summary(
        f"train {os.path.basename(os.path.normpath(args.model_dir))}",
        f"{summary['records']} preference records, mean training loss "
        f"{summary['train_loss']:.4f} -> {args.model_dir}",
    )


if __name__ == "__main__":
    main()
