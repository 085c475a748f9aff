"""The vLLM environment, from the main suite: the adapter's tests run there (tests/vllm_env), and
the workflow runs its generating jobs with that environment's interpreter (`python.generate`).

The environment is `.venv-vllm` (`python3 -m venv .venv-vllm && .venv-vllm/bin/pip install -e
".[vllm,test]"`; `.ci/run` makes it) or the interpreter in SHERLOCK_VLLM_PYTHON. Without one
these tests skip and say how to make it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("SHERLOCK_VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    if not VLLM_PYTHON.is_file():
        pytest.skip(
            f"no vLLM environment at {VLLM_PYTHON}: make it with `python3 -m venv .venv-vllm && "
            ".venv-vllm/bin/pip install -e '.[vllm,test]'` (or set SHERLOCK_VLLM_PYTHON)"
        )
    probe = subprocess.run(
        [str(VLLM_PYTHON), "-c", "import vllm, pytest; print(vllm.__version__)"],
        capture_output=True,
        text=True,
        env=OFFLINE,
    )
    assert probe.returncode == 0, f"{VLLM_PYTHON} cannot import vllm: {probe.stderr[-2000:]}"
    return VLLM_PYTHON


def test_the_adapter_passes_against_real_vllm_objects(vllm_python: Path) -> None:
    result = subprocess.run(
        [str(vllm_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/vllm_env"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=OFFLINE,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "12 passed" in output and "skipped" not in output, output[-2000:]


@pytest.mark.workflow
def test_generating_jobs_run_with_the_interpreter_of_their_stack(vllm_python, tmp_path) -> None:
    """Stage I with python.generate = the vLLM environment (the transformers backend: no GPU):
    R0 answers D_B there, importing `sherlock` from the checkout, while LLaMA-Factory trains in
    the Python running Snakemake."""
    settings = {
        "synthetic": {"n_train": 160, "n_test": 20},
        "splits": {"d_a": 64, "d_b": 16, "pool": 16},
        "sft": {"r0": {"num_train_epochs": 1}},
        "python": {"generate": str(vllm_python)},
    }
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(settings))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--cores",
            "2",
            "-p",
            "sherlock_sft_data",
            "--configfile",
            "stack.yaml",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=OFFLINE,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert f"{vllm_python} -m sherlock.runtime.gpu_slots" in output
    rows = json.loads((tmp_path / "results" / "data" / "sherlock_sft.json").read_text())
    assert len(rows) == 2 * 16
    log = (tmp_path / "results" / "logs" / "sherlock_sft_data.log").read_text()
    assert "[sherlock] sherlock_sft data" in log
