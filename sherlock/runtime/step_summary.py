"""One summary line per finished step, in a form the workflow can collect from the job logs.

Every workflow script ends with ``stage_summary(step, text)``; the line starts with ``SUMMARY_TAG``
so Snakemake's ``onsuccess`` handler can print the run's summary lines in order.
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
