"""Multi-node training under SLURM: one launcher per node, all meeting at the first node.

A training job with ``resources.train.nodes: N > 1`` is submitted as one SLURM job of N nodes
(``rules/common.smk``: ``training_resources``); its command runs once, on the first node, and
starts the training on every node with ``srun`` (``across_nodes``). On each node
``python -m sherlock.runtime.multinode -- <command>`` sets what the launchers read to find each
other —
``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``: ``llamafactory-cli`` passes them to
``torchrun`` itself, our trainer does in ``sherlock.preference.run.distributed_relaunch`` — and
execs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

_PORT_BASE = 20000  # MASTER_PORT = base + job id mod span: jobs sharing a node do not collide
_PORT_SPAN = 20000


def expand_nodelist(nodelist: str) -> list[str]:
    """Host names of a SLURM node list such as ``gpu[01-03,07],login1``."""
    scontrol = shutil.which("scontrol")
    if scontrol:
        result = subprocess.run(
            [scontrol, "show", "hostnames", nodelist], capture_output=True, text=True
        )
        if result.returncode == 0 and result.stdout.split():
            return result.stdout.split()
    hosts: list[str] = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", nodelist):
        if plain:
            hosts.append(plain)
            continue
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            for number in range(int(first), int(last or first) + 1):
                hosts.append(f"{prefix}{number:0{len(first)}d}")
    return hosts


def node_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The rendezvous variables of this node, from the variables ``srun`` sets for its task."""
    try:
        nodes = environ.get("SLURM_STEP_NUM_NODES") or environ["SLURM_NNODES"]
        rank = environ["SLURM_NODEID"]
        nodelist = environ.get("SLURM_STEP_NODELIST") or environ["SLURM_JOB_NODELIST"]
        job_id = environ["SLURM_JOB_ID"]
    except KeyError as missing:
        raise RuntimeError(
            f"sherlock.runtime.multinode runs under srun, which sets {missing}; it is not set"
        ) from None
    return {
        "NNODES": str(int(nodes)),
        "NODE_RANK": str(int(rank)),
        "MASTER_ADDR": expand_nodelist(nodelist)[0],
        "MASTER_PORT": str(_PORT_BASE + int(job_id) % _PORT_SPAN),
    }


def across_nodes(nodes: int, command: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """``command`` as run once per node of this SLURM job (unchanged for one node)."""
    if nodes == 1:
        return list(command)
    if "SLURM_JOB_ID" not in environ:
        raise RuntimeError(
            f"resources.train.nodes is {nodes}: multi-node training runs inside a SLURM job "
            "(snakemake --profile profiles/slurm); set nodes: 1 to train on this machine"
        )
    return [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        sys.executable,
        "-m",
        "sherlock.runtime.multinode",
        "--",
        *command,
    ]


def main(argv: list[str] | None = None) -> None:
    command = list(sys.argv[1:] if argv is None else argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise SystemExit("usage: python -m sherlock.runtime.multinode -- COMMAND [ARGS...]")
    rendezvous = node_environment(os.environ)
    settings = " ".join(f"{key}={value}" for key, value in sorted(rendezvous.items()))
    print(f"sherlock.runtime.multinode: {settings}", file=sys.stderr, flush=True)
    os.execvpe(command[0], command, {**os.environ, **rendezvous})


if __name__ == "__main__":
    main()
