"""Disjoint GPUs for concurrent local jobs: Snakemake counts GPUs but never says which ones.

    python -m sherlock.runtime.gpu_slots --count 2 -- python train.py ...

claims ``--count`` devices, sets ``CUDA_VISIBLE_DEVICES`` to them and replaces itself with the
command. A device is claimed by an exclusive, non-blocking ``flock`` on its lock file; the lock
belongs to the open file, which the command inherits, so the devices stay claimed exactly as
long as the job's process lives and are freed by the kernel when it ends, ``kill -9`` included.
Snakemake's ``--resources gpu=N`` keeps the claims of concurrent jobs within N devices; a claim
that still finds too few free ones (another workflow on the machine) waits for them.

The devices are ``SHERLOCK_GPU_IDS`` (comma-separated) when set, else the ones
``CUDA_VISIBLE_DEVICES`` lists, else every GPU ``nvidia-smi`` reports. Under a scheduler that
assigns devices itself (a SLURM job) the command runs unchanged.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "sherlock-gpu-locks"


def visible_devices(environ: dict[str, str] | None = None) -> list[str]:
    """The device ids jobs on this machine may use (see the module doc)."""
    environ = dict(os.environ if environ is None else environ)
    for variable in ("SHERLOCK_GPU_IDS", "CUDA_VISIBLE_DEVICES"):
        if environ.get(variable, "").strip():
            return [d.strip() for d in environ[variable].split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line.strip() for line in listing.stdout.splitlines() if line.strip()]


def try_claim(count: int, devices: list[str], lock_dir: Path) -> tuple[list[str], list[int]]:
    """Claim ``count`` free devices now: (their ids, the open lock descriptors), or ([], [])."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    claimed: list[str] = []
    descriptors: list[int] = []
    for device in devices:
        descriptor = os.open(lock_dir / f"gpu{device}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        claimed.append(device)
        descriptors.append(descriptor)
        if len(claimed) == count:
            return claimed, descriptors
    for descriptor in descriptors:
        os.close(descriptor)  # closing releases the lock: never hold a partial claim
    return [], []


def claim(
    count: int, devices: list[str], lock_dir: Path, timeout: float, poll: float = 0.5
) -> tuple[list[str], list[int]]:
    """Wait (up to ``timeout`` seconds) until ``count`` devices are free, and claim them."""
    if count > len(devices):
        raise RuntimeError(
            f"a job asks for {count} GPU(s) but only {len(devices)} are visible ({devices}); "
            "lower resources.*.gpu or run with fewer --resources gpu"
        )
    deadline = time.monotonic() + timeout
    while True:
        claimed, descriptors = try_claim(count, devices, lock_dir)
        if claimed:
            return claimed, descriptors
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {count} free GPU(s) among {devices} after {timeout:.0f} s")
        time.sleep(poll)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, required=True, help="GPUs the job needs")
    parser.add_argument("--lock-dir", type=Path, default=DEFAULT_LOCK_DIR)
    parser.add_argument("--timeout", type=float, default=24 * 3600)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command and arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    environ = dict(os.environ)
    if args.count > 0 and "SLURM_JOB_ID" not in environ:
        devices, descriptors = claim(
            args.count, visible_devices(environ), args.lock_dir, args.timeout
        )
        for descriptor in descriptors:
            os.set_inheritable(descriptor, True)  # the command holds the claim until it ends
        environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        print(f"gpu_slots: CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']}", file=sys.stderr)
    sys.stderr.flush()
    os.execvpe(command[0], command, environ)


if __name__ == "__main__":
    main()
