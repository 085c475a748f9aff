"""One summary line per finished step, in a form the workflow can collect from the job logs.

Every workflow script ends with ``stage_summary(step, text)``; the line starts with ``SUMMARY_TAG``
so Snakemake's ``onsuccess`` handler can print the run's summary lines in order. A training's
summary reports the mean loss of its whole logged history (``mean_training_loss``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

SUMMARY_TAG = "[sherlock]"


def stage_summary(step: str, text: str) -> None:
    """Print the one summary line of a finished step."""
    print(f"{SUMMARY_TAG} {step}: {text}", flush=True)


def collect_summaries(log_files: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The summary lines of the given logs (those that exist), oldest log first."""
    existing = [path for path in log_files if os.path.isfile(path)]
    lines = []
    for path in sorted(existing, key=os.path.getmtime):
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                # tqdm redraws a bar with carriage returns; the summary is the text after the last
                text = line.rstrip("\n").split("\r")[-1]
                if text.startswith(SUMMARY_TAG):
                    lines.append(text)
    return lines


def mean_training_loss(log_history: Iterable[dict]) -> float:
    """The mean training loss over every logged step of a training, resumed ones included.

    Each logged ``loss`` is the mean over the steps since the previous log line, so it counts for
    that many steps. Trainer's own ``train_loss`` cannot serve: after a resume it sums only the
    resumed steps' losses but divides by all steps (0.35 where the logged losses were 1.6-2.0).
    ``log_history`` is what ``trainer_state.json`` keeps, restored from the checkpoint on resume.
    The last steps, fewer than ``logging_steps``, have no log line and are not counted.
    """
    total, steps, previous = 0.0, 0, 0
    for entry in log_history:
        if "loss" not in entry or "step" not in entry:
            continue  # evaluation lines, the final train_* line
        window = entry["step"] - previous
        previous = entry["step"]
        total += float(entry["loss"]) * max(window, 1)
        steps += max(window, 1)
    return total / steps if steps else float("nan")
