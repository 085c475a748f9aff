"""Training curves of one checkpoint from the log its trainer left in the checkpoint folder."""

import argparse
import json
import os
import sys

from sherlock.report.figures import training_curves
from sherlock.runtime.step_summary import stage_summary

# LLaMA-Factory (Stage I) writes the Trainer state; our preference trainer writes its own summary.
LOG_FILES = ("sherlock_training.json", "trainer_state.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a trained checkpoint folder")
    parser.add_argument("--stage", required=True)
    parser.add_argument("--output", required=True, help="PNG")
    args = parser.parse_args()
    for name in LOG_FILES:
        path = os.path.join(args.model, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                history = json.load(handle)["log_history"]
            break
    else:
        sys.exit(f"error: {args.model} has none of {', '.join(LOG_FILES)} (no training log)")
    training_curves(args.stage, history, args.output)
    steps = [entry for entry in history if "loss" in entry and "step" in entry]
    text = f"{len(steps)} logged steps"
    if steps:
        text += f", loss {steps[0]['loss']:.4f} (step {steps[0]['step']}) -> "
        text += f"{steps[-1]['loss']:.4f} (step {steps[-1]['step']})"
    stage_summary(f"training curves {args.stage}", text)


if __name__ == "__main__":
    main()
