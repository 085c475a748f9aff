"""A real SLURM: the embedded default through `sft`, submitted with `--profile profiles/slurm`.

`tests/slurm/start_local_slurm.sh` starts a one-node cluster on loopback (Debian's slurm-wlm and
munge, as root; `.ci/run` installs them). Where that cannot be done the tests skip and say why.
The cluster has no accounting database, so Snakemake's SLURM plugin polls `squeue`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
PROFILE = ["--profile", str(ROOT / "profiles" / "slurm")]
# No accounting here: status from squeue, no account; poll quickly (the jobs take seconds).
SLURM_ARGS = [
    "--slurm-status-command", "squeue", "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
]  # fmt: skip
SMALL = """
synthetic: {n_train: 160, n_test: 20}
splits: {d_a: 64, d_b: 16, pool: 16}
sft:
  r0: {num_train_epochs: 1}
  sherlock_sft: {num_train_epochs: 1}
"""
# Stage I's jobs that go through sbatch; the rest run no model and are local rules
# (synthetic_data, splits, r0_config, sft_config), which a cluster run does not queue.
STAGE_I = ["tiny_model", "source_records", "r0", "sherlock_sft_data", "sft"]
STAGE_I_LOCAL = ["synthetic_data", "splits", "r0_config", "sft_config"]
PAPER_BENCHMARK_FILES = [
    "MMBench_DEV_EN_V11.tsv", "MMStar.tsv", "MMMU_DEV_VAL.tsv", "MathVista_MINI.tsv",
    "HallusionBench.tsv", "AI2D_TEST.tsv", "MMVet.tsv", "MME.tsv",
]  # fmt: skip

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def cluster() -> None:
    script = ROOT / "tests" / "slurm" / "start_local_slurm.sh"
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        pytest.skip("SLURM cannot start here: slurm-wlm and munge are not installed")
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=180)
    if result.returncode != 0 or "ready" not in result.stdout:
        pytest.skip(f"SLURM cannot start here: {(result.stdout + result.stderr)[-800:]}")


@pytest.fixture(scope="module")
def slurm_build(cluster, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("slurm")
    (workdir / "small.yaml").write_text(SMALL)
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), *PROFILE, *SLURM_ARGS]
        + ["sft", "--configfile", "small.yaml"],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=1200,
    )
    return workdir, result


def test_stage_one_runs_as_slurm_jobs_with_their_resource_tags(slurm_build) -> None:
    workdir, result = slurm_build
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert (workdir / "results" / "models" / "sft" / "model.safetensors").is_file()
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: .*?/rule_(\w+)/", log))
    assert sorted(submitted.values()) == sorted(STAGE_I)  # every job that may run a model
    for rule in STAGE_I_LOCAL:  # ran here, without a submission
        assert (workdir / "results" / "logs" / f"{rule}.log").is_file(), rule
    accounting = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i %T %C %m", "-j", ",".join(submitted)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = {line.split()[0]: line.split()[1:] for line in accounting.splitlines()}
    for job_id, rule in submitted.items():
        state, cpus, memory = jobs[job_id]
        assert state == "COMPLETED", (rule, state)
        assert memory == "8000M"  # resources.*.mem_mb
        if rule in ("r0", "sherlock_sft_data", "sft"):
            assert cpus == "2"  # resources.{train,generate}.cpus_per_task
    # each job's own log is where it is in a local run; SLURM's (deleted after success by
    # default) under .snakemake/slurm_logs/rule_<rule>/<jobid>.log
    assert "[sherlock] train sft:" in (workdir / "results" / "logs" / "sft.log").read_text()


def slurm_run(workdir: Path, *configfiles: str) -> tuple[str, dict[str, str]]:
    """``sft`` again through SLURM with ``configfiles`` over small.yaml: its output and the
    jobs it submitted (job id → rule)."""
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), *PROFILE, *SLURM_ARGS]
        + ["sft", "--configfile", "small.yaml", *configfiles],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=1200,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    return log, dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: .*?/rule_(\w+)/", log))


def test_a_rerun_resubmits_nothing_after_an_execution_change_only_the_dependents_of_an_lr(
    slurm_build,
) -> None:
    workdir, result = slurm_build
    assert result.returncode == 0
    here = Path(sys.executable)  # the same interpreter by another name (python3 for python)
    python = next(p for p in (here.with_name("python3"), here.with_name("python"))
                  if p.exists() and p.name != here.name)  # fmt: skip
    (workdir / "execution.yaml").write_text(
        "generation: {shards: 2, chunk_size: 64}\n"
        "checkpointing: {save_steps: 3, save_total_limit: 1, resume: false}\n"
        "tracking: {report_to: tensorboard}\n"
        "resources: {train: {mem_mb: 7000, runtime: 30}, generate: {mem_mb: 7000}}\n"
        "sft: {common: {per_device_train_batch_size: 4, gradient_accumulation_steps: 2}}\n"
        f"python: {{train: {python}, generate: {python}}}\n"
    )
    log, submitted = slurm_run(workdir, "execution.yaml")
    assert submitted == {} and "Nothing to be done" in log
    (workdir / "lr.yaml").write_text("sft: {sherlock_sft: {learning_rate: 0.002}}\n")
    log, submitted = slurm_run(workdir, "lr.yaml")
    assert sorted(submitted.values()) == ["sft"]  # its run file is a local rule
    assert "rule sft_config:" in log and "rule r0:" not in log


def slurm_plan(workdir: Path, preset: str, target: str):
    """The resources of each rule in a dry run of ``preset`` through the SLURM executor (with
    the data file and the vLLM interpreter the presets expect in place)."""
    data = workdir / "data" / "LLaVA-CoT-100k"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text("{}\n")
    benchmarks = workdir / "data" / "LMUData"  # the paper preset's VLMEvalKit files
    benchmarks.mkdir(parents=True)
    for name in PAPER_BENCHMARK_FILES:
        (benchmarks / name).write_text("index\tquestion\tanswer\timage\n")
    vllm_python = workdir / ".venv-vllm" / "bin" / "python"
    vllm_python.parent.mkdir(parents=True)
    vllm_python.symlink_to(sys.executable)
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), *PROFILE, *SLURM_ARGS, "-n", target]
        + ["--configfile", str(ROOT / "config" / "presets" / preset)],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    blocks = result.stdout.split("\n\n")

    def resources(rule: str) -> str:
        block = next(b for b in blocks if re.search(rf"^rule {rule}:", b, flags=re.M))
        return re.search(r"resources: (.*)", block).group(1)

    return resources


def test_the_paper_preset_plans_its_gpu_requests_through_the_slurm_executor(
    cluster, tmp_path, monkeypatch
):
    # A hub id plans when the hub may be asked; with HF_HUB_OFFLINE set (as conftest sets it)
    # it would have to be in the local cache (sherlock.config_paths). A dry run downloads nothing.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    resources = slurm_plan(tmp_path, "paper_llama32v.yaml", "iter1")
    for rule in ("r0", "sft", "offline", "iter_model"):
        assert "gpu=8" in resources(rule) and "cpus_per_task=64" in resources(rule)
    for rule in ("sherlock_sft_data_shard", "offline_prefs_shard", "candidates_shard"):
        assert "gpu=1" in resources(rule) and "mem_mb=64000" in resources(rule)
    assert "gpu=0" in resources("sherlock_sft_data")  # the gather


def test_the_paper_preset_plans_its_evaluation_through_the_slurm_executor(
    cluster, tmp_path, monkeypatch
):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # hub ids plan (see below)
    resources = slurm_plan(tmp_path, "paper_llama32v.yaml", "evaluation")
    for rule in ("evaluate_shard", "judge_answers"):  # a model on one GPU each
        assert "gpu=1" in resources(rule) and "mem_mb=64000" in resources(rule)
    assert "gpu=0" in resources("evaluate")  # the gather
    for rule in ("vlmevalkit_benchmark", "vlmevalkit_predictions", "accuracy_table"):
        assert "gpu=" not in resources(rule)  # no model: local rules


def test_the_qwen_preset_plans_its_gpu_requests_through_the_slurm_executor(
    cluster, tmp_path, monkeypatch
):
    # A hub id plans when the hub may be asked; with HF_HUB_OFFLINE set (as conftest sets it)
    # it would have to be in the local cache (sherlock.config_paths). A dry run downloads nothing.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    resources = slurm_plan(tmp_path, "qwen25vl_7b.yaml", "iter2")
    for rule in ("r0", "sft", "offline", "iter_model"):
        assert "gpu=8" in resources(rule) and "runtime=1440" in resources(rule)
    for rule in ("sherlock_sft_data_shard", "candidates_shard", "rejected_shard"):
        assert "gpu=1" in resources(rule) and "runtime=720" in resources(rule)


def test_each_node_of_a_slurm_step_gets_its_rendezvous(cluster, tmp_path):
    """`python -m sherlock.runtime.multinode` under a real srun (one node here: rank 0 of 1, the
    rendezvous at this node's own name), as a multi-node training starts it on every node."""
    dump = tmp_path / "rendezvous.txt"
    code = (
        "import os, sys; open(sys.argv[1], 'w').write(' '.join(f'{k}={os.environ[k]}' for k in "
        "('NNODES', 'NODE_RANK', 'MASTER_ADDR', 'MASTER_PORT')))"
    )
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"srun --nodes=1 --ntasks=1 --ntasks-per-node=1 {sys.executable}"
        " -m sherlock.runtime.multinode"
        f' -- {sys.executable} -c "{code}" {dump}\n'
    )
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--wait", "--nodes=1", "--ntasks=1", f"--output={tmp_path}/out",
         f"--export=ALL,PYTHONPATH={ROOT}", str(script)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr + (tmp_path / "out").read_text()
    node = subprocess.run(["sinfo", "-h", "-o", "%N"], capture_output=True, text=True).stdout
    job_id = int(submitted.stdout.strip().split(";")[0])
    assert dump.read_text() == (
        f"NNODES=1 NODE_RANK=0 MASTER_ADDR={node.strip()} MASTER_PORT={20000 + job_id % 20000}"
    )
