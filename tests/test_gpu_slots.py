"""Local multi-GPU runs: concurrent jobs get disjoint devices, and a job that ends frees them.

Simulated device ids (``SHERLOCK_GPU_IDS``): no GPU is needed to test the assignment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sherlock.runtime.gpu_slots import claim, try_claim, visible_devices

DEVICES = ["0", "1", "2", "3"]
REPORT = (
    "import os, time; print(os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True); time.sleep(60)"
)


def test_claims_are_disjoint_and_closing_frees_them(tmp_path: Path) -> None:
    first, first_locks = try_claim(2, DEVICES, tmp_path)
    second, second_locks = try_claim(2, DEVICES, tmp_path)
    assert first == ["0", "1"] and second == ["2", "3"]
    assert try_claim(1, DEVICES, tmp_path) == ([], [])  # all taken: nothing half-claimed
    for descriptor in first_locks:
        os.close(descriptor)
    third, _ = try_claim(2, DEVICES, tmp_path)
    assert third == ["0", "1"]
    with pytest.raises(TimeoutError):
        claim(1, DEVICES, tmp_path, timeout=0.3, poll=0.1)
    with pytest.raises(RuntimeError, match="asks for 5 GPU"):
        claim(5, DEVICES, tmp_path, timeout=1)
    del second_locks


def test_devices_come_from_the_simulated_list_then_cuda_visible_devices() -> None:
    assert visible_devices({"SHERLOCK_GPU_IDS": "4, 5", "CUDA_VISIBLE_DEVICES": "0"}) == ["4", "5"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]


def _job(tmp_path: Path, count: int, **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, "SHERLOCK_GPU_IDS": ",".join(DEVICES), **extra_env}
    return subprocess.Popen(
        [sys.executable, "-m", "sherlock.runtime.gpu_slots", "--count", str(count)]
        + ["--lock-dir", str(tmp_path), "--", sys.executable, "-c", REPORT],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def test_concurrent_jobs_get_disjoint_devices_and_a_killed_job_frees_its_own(tmp_path: Path):
    jobs = [_job(tmp_path, 2), _job(tmp_path, 2)]
    seen = [job.stdout.readline().strip().split(",") for job in jobs]
    assert sorted(sum(seen, [])) == DEVICES  # two jobs, four devices, none shared
    waiting = _job(tmp_path, 1)  # everything is taken: it waits
    time.sleep(1.5)
    assert waiting.poll() is None
    jobs[0].send_signal(signal.SIGKILL)  # kill -9: the kernel drops its locks
    jobs[0].wait()
    freed = waiting.stdout.readline().strip()
    assert freed in seen[0]
    for job in (jobs[1], waiting):
        job.kill()
        job.wait()


def test_cpu_jobs_and_slurm_jobs_keep_their_environment(tmp_path: Path) -> None:
    for count, extra in (
        (0, {"CUDA_VISIBLE_DEVICES": "7"}),
        (2, {"SLURM_JOB_ID": "1", "CUDA_VISIBLE_DEVICES": "7"}),
    ):
        job = _job(tmp_path, count, **extra)
        assert job.stdout.readline().strip() == "7"
        job.kill()
        job.wait()
