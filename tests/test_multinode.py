"""Multi-node training: the rendezvous each node computes, the launch commands, and the SLURM
request the plugin builds from a training job's tags (`resources.train.nodes`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_workflow import put_paper_benchmarks

from sherlock.preference.run import distributed_relaunch
from sherlock.runtime.multinode import across_nodes, expand_nodelist, node_environment

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]

NODE_1_OF_2 = {
    "SLURM_JOB_ID": "4242",
    "SLURM_NNODES": "2",
    "SLURM_STEP_NUM_NODES": "2",
    "SLURM_NODEID": "1",
    "SLURM_STEP_NODELIST": "gpu[07-08]",
    "SLURM_JOB_NODELIST": "gpu[07-08]",
}


def test_node_lists_expand_like_scontrol(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)  # the parser, not scontrol
    assert expand_nodelist("gpu[07-09,11],login1") == ["gpu07", "gpu08", "gpu09", "gpu11", "login1"]
    assert expand_nodelist("node1") == ["node1"]
    assert expand_nodelist("a[1-2],b[001]") == ["a1", "a2", "b001"]


@pytest.mark.skipif(shutil.which("scontrol") is None, reason="scontrol is not installed")
def test_the_parser_agrees_with_scontrol(monkeypatch, tmp_path):
    # scontrol reads a slurm.conf even to expand a list: a minimal one, so the test does not
    # depend on a cluster having been set up on this machine before it
    (tmp_path / "slurm.conf").write_text("ClusterName=probe\nSlurmctldHost=localhost\n")
    listed = "gpu[07-09,11],login1"
    real = subprocess.run(
        ["scontrol", "show", "hostnames", listed],
        capture_output=True,
        text=True,
        env={**os.environ, "SLURM_CONF": str(tmp_path / "slurm.conf")},
        timeout=60,
    )
    assert real.returncode == 0, real.stderr
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert (
        expand_nodelist(listed)
        == real.stdout.split()
        == ["gpu07", "gpu08", "gpu09", "gpu11", "login1"]
    )


def test_every_node_meets_at_the_first_one(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    second = node_environment(NODE_1_OF_2)
    first = node_environment({**NODE_1_OF_2, "SLURM_NODEID": "0"})
    assert second == {
        "NNODES": "2",
        "NODE_RANK": "1",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": "24242",
    }
    assert {k: v for k, v in first.items() if k != "NODE_RANK"} == {
        k: v for k, v in second.items() if k != "NODE_RANK"
    }
    with pytest.raises(RuntimeError, match="SLURM_NODEID"):
        node_environment({"SLURM_JOB_ID": "1", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "a"})


def test_a_multi_node_launch_is_one_srun_task_per_node():
    command = ["llamafactory-cli", "train", "run.yaml"]
    assert across_nodes(1, command, {}) == command  # one node: unchanged, no SLURM needed
    launch = across_nodes(2, command, {"SLURM_JOB_ID": "7"})
    assert launch[:5] == [
        "srun",
        "--nodes=2",
        "--ntasks=2",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
    ]
    assert launch[5:] == [sys.executable, "-m", "sherlock.runtime.multinode", "--", *command]
    with pytest.raises(RuntimeError, match="inside a SLURM job"):
        across_nodes(2, command, {})


def test_our_trainer_joins_the_nodes_through_torchrun():
    argv = ["train_sherlock.py", "run.yaml", "--model-dir", "out"]
    rendezvous = {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "gpu07", "MASTER_PORT": "24242"}
    command = distributed_relaunch(argv, rendezvous, gpu_count=8)
    assert command[1:] == [
        "--nnodes=2",
        "--node_rank=1",
        "--master_addr=gpu07",
        "--master_port=24242",
        "--nproc_per_node=8",
        *argv,
    ]
    # one GPU per node still needs torchrun to join the other node
    assert "--nproc_per_node=1" in distributed_relaunch(argv, rendezvous, gpu_count=1)
    assert distributed_relaunch(argv, {**rendezvous, "LOCAL_RANK": "0"}, gpu_count=8) is None


def test_the_module_execs_the_command_with_the_rendezvous(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    dump = tmp_path / "env.json"
    code = (
        "import json, os, sys; json.dump({k: os.environ[k] for k in "
        "('NNODES', 'NODE_RANK', 'MASTER_ADDR', 'MASTER_PORT')}, open(sys.argv[1], 'w'))"
    )
    env = {"PATH": "/usr/bin:/bin", **NODE_1_OF_2, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "sherlock.runtime.multinode", "--", sys.executable, "-c", code,
         str(dump)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(dump.read_text())["NODE_RANK"] == "1"
    assert "sherlock.runtime.multinode: MASTER_ADDR=gpu07" in result.stderr


class _Resources(dict):
    """Snakemake's job resources: mapping and attribute access."""

    __getattr__ = dict.get


def submit_command(tags: dict) -> str:
    """The sbatch call snakemake-executor-plugin-slurm builds for a job with these tags."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(resources=_Resources(tags), threads=tags.get("cpus_per_task", 1))
    params = {
        "run_uuid": "u",
        "slurm_logfile": "log",
        "comment_str": "c",
        "account": "",
        "partition": "",
        "workdir": "/w",
    }
    return get_submit_command(job, params) + set_gres_string(job)


def r0_plan(workdir: Path, *configfiles: str) -> str:
    """The dry-run block (resources, command) of the r0 training under these config files."""
    result = subprocess.run(
        [*SNAKEMAKE, "-n", "-p", "sft", "--configfile", *configfiles, "--directory", str(workdir)],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split("rule r0:")[1].split("\n\n")[0]


def test_the_slurm_plugin_asks_for_n_nodes_with_their_gpus_and_one_task_each(tmp_path, monkeypatch):
    """The tags rules/common.smk gives a 2-node training (read from a dry run) make the plugin
    ask for 2 nodes, 2 tasks, 8 GPUs per node, and run the command without srun (mpi form)."""
    # A hub id plans when the hub may be asked; with HF_HUB_OFFLINE set (as conftest sets it)
    # it would have to be in the local cache (sherlock.config_paths). A dry run downloads nothing.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    data = tmp_path / "data" / "LLaVA-CoT-100k"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text("{}\n")
    put_paper_benchmarks(tmp_path)  # the preset's VLMEvalKit files: a plan needs them to exist
    two_nodes = tmp_path / "two_nodes.yaml"
    two_nodes.write_text(
        "resources:\n  train: {gpu: 8, mem_mb: 480000, runtime: 2880, cpus_per_task: 64,"
        " nodes: 2}\n"
    )
    paper = ROOT / "config" / "presets" / "paper_llama32v.yaml"
    block = r0_plan(tmp_path, str(paper), str(two_nodes))
    assert "--resume --nodes 2" in block  # the launcher is told to start every node
    line = block.split("resources: ")[1].splitlines()[0]
    tags = {}
    for item in line.split(", "):
        key, value = item.split("=", 1)
        tags[key] = int(value) if value.isdigit() else value
    sbatch = submit_command(tags)
    assert "--nodes=2" in sbatch and "--ntasks=2" in sbatch and "--gres=gpu:8" in sbatch
    assert "--gpus=" not in sbatch and "--ntasks-per-gpu" not in sbatch
    assert "--cpus-per-task=64" in sbatch and "--mem 480000" in sbatch
    assert tags["mpi"] == "srun"  # the jobstep plugin runs the command as is (it calls srun)
    # a single-node training keeps the plain form: 8 GPUs, no node/task geometry
    single = r0_plan(tmp_path, str(paper))
    assert "gpu=8" in single and "nodes=" not in single and "mpi=" not in single
    assert "--nodes" not in single
