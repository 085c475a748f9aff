"""Live training curves: the tracker every training reports to (config ``tracking``).

One tracker setting serves LLaMA-Factory's runs and our trainer alike: the launching script
sets ``report_to`` and names the training's own logging folder,
``<results_dir>/tracking/<training>`` (r0, sft, offline, iter1, ...), so
``tensorboard --logdir <results_dir>/tracking`` shows every stage side by side while it trains.

The setting is applied at launch, never written into a run file: switching it on or off changes
no run file, so it neither retrains a finished model nor discards a resumable checkpoint.
Trackers here run without a network; one that needs credentials would read them from the
environment only (nothing of the kind enters a file).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# tracker → (package it needs, environment variable naming its local folder). transformers 5.6
# reads TensorBoard's folder from TENSORBOARD_LOGGING_DIR only (``logging_dir`` is deprecated).
TRACKERS = {"tensorboard": ("tensorboard", "TENSORBOARD_LOGGING_DIR")}
NONE = "none"


class TrackingError(ValueError):
    pass


@dataclass(frozen=True)
class Tracking:
    """``report_to`` (a name of ``TRACKERS``, or ``none``) and the training's logging folder."""

    report_to: str = NONE
    folder: str | None = None

    def __post_init__(self) -> None:
        if self.report_to != NONE and self.report_to not in TRACKERS:
            known = ", ".join([NONE, *TRACKERS])
            raise TrackingError(f"tracking.report_to: unknown tracker {self.report_to!r} ({known})")
        if self.enabled and not self.folder:
            raise TrackingError(f"tracking.report_to is {self.report_to}: give --tracking-dir")

    @property
    def enabled(self) -> bool:
        return self.report_to != NONE

    def require(self) -> None:
        """Fail before any model loads when the tracker's package is missing."""
        if self.enabled:
            package = TRACKERS[self.report_to][0]
            if importlib.util.find_spec(package) is None:
                raise TrackingError(
                    f"tracking.report_to is {self.report_to} but the {package} package is not "
                    f"installed in this environment (pip install -e '.[train]')"
                )

    def environment(self) -> dict[str, str]:
        """The variables that point the tracker at this training's folder."""
        if not self.enabled:
            return {}
        return {TRACKERS[self.report_to][1]: str(Path(self.folder).absolute())}

    def start(self, resume_step: int | None) -> None:
        """Ready the folder before the training starts. Afresh (``resume_step`` None) it is
        emptied. Resumed from the checkpoint of step N, it is kept and marked so that TensorBoard
        drops the points the killed attempt logged after step N, which the resumed one logs
        again: a writer with ``purge_step`` records that at step N + 1, in an event file read
        before the resumed training's own (TensorBoard reads them in name order, and names
        start with the second a file is opened: a second passes before the training opens its
        own)."""
        if not self.enabled:
            return
        if resume_step is None:
            shutil.rmtree(self.folder, ignore_errors=True)
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            SummaryWriter(self.folder, purge_step=resume_step + 1).close()
            time.sleep(1.0)


@contextmanager
def tracking_environment(
    tracking: Tracking, environ: MutableMapping[str, str] | None = None
) -> Iterator[None]:
    """``tracking.environment()`` set in ``environ`` (``os.environ``) for the block, then undone."""
    environ = os.environ if environ is None else environ
    saved = {name: environ.get(name) for name in tracking.environment()}
    environ.update(tracking.environment())
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    """--report-to and --tracking-dir of the training scripts (config ``tracking``)."""
    parser.add_argument(
        "--report-to",
        default=NONE,
        choices=[NONE, *TRACKERS],
        help="tracker of the live training curves (config: tracking.report_to)",
    )
    parser.add_argument(
        "--tracking-dir", default=None, help="this training's logging folder for the tracker"
    )


def tracking_from_args(args: argparse.Namespace) -> Tracking:
    tracking = Tracking(args.report_to, args.tracking_dir)
    tracking.require()
    return tracking
