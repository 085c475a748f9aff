"""Wall time of the workflow itself: a from-scratch tiny Stage I (or II), and planning the paper.

    .venv/bin/python benchmarks/workflow_times.py --target sft --repeats 3 --dry-repeats 5
    .venv/bin/python benchmarks/workflow_times.py --target all --repeats 1 --keep /tmp/tiny_all
    .venv/bin/python benchmarks/workflow_times.py --target all --repeats 1 --dry-repeats 0 \
        --configfile config/presets/tiny_mllama.yaml

Each build runs in a fresh temporary working directory (nothing cached but Python's own
bytecode), with `--cores 2`; the dry run plans the paper preset's full DAG up to Offline against
a placeholder source file. Prints the median and every sample.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def build_time(
    target: str, cores: int, keep: Path | None = None, configfile: Path | None = None
) -> tuple[float, dict[str, float]]:
    """Wall time of the whole build, and each job's own seconds (Snakemake's benchmark files).

    ``keep``: build in this new folder and leave it there (to read the run's outputs after);
    ``configfile``: a preset laid over the default."""
    if keep is not None:
        keep.mkdir(parents=True)
    preset = ["--configfile", str(configfile.resolve())] if configfile else []
    results = "results"
    if configfile:
        results = (yaml.safe_load(configfile.read_text()) or {}).get("results_dir", results)
    with tempfile.TemporaryDirectory() if keep is None else _kept(keep) as workdir:
        total = timed(
            [*SNAKEMAKE, "--directory", workdir, "--cores", str(cores), target, *preset],
            Path(workdir),
        )
        per_rule = {}
        for tsv in sorted((Path(workdir) / results / "benchmarks").glob("*.tsv")):
            per_rule[tsv.stem] = float(tsv.read_text().splitlines()[1].split("\t")[0])
        return total, per_rule


class _kept:
    """Like TemporaryDirectory, but the folder outlives the block."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: object) -> None:
        return None


def paper_dry_run_time(target: str) -> float:
    with tempfile.TemporaryDirectory() as workdir:
        data = Path(workdir) / "data" / "LLaVA-CoT-100k"
        data.mkdir(parents=True)
        (data / "train.jsonl").write_text("{}\n")
        preset = ROOT / "config" / "presets" / "paper_llama32v.yaml"
        return timed(
            [*SNAKEMAKE, "--directory", workdir, "-n", target, "--configfile", str(preset)],
            Path(workdir),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="sft")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dry-repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="new folder for the last build")
    parser.add_argument("--configfile", type=Path, default=None, help="a preset to build")
    args = parser.parse_args()
    runs = [
        build_time(
            args.target,
            args.cores,
            args.keep if i == args.repeats - 1 else None,
            args.configfile,
        )
        for i in range(args.repeats)
    ]
    builds = [total for total, _ in runs]
    dry = [paper_dry_run_time(args.target) for _ in range(args.dry_repeats)]
    for rule in runs[0][1]:
        samples = [per_rule[rule] for _, per_rule in runs]
        print(f"  job {rule:18s} median {statistics.median(samples):6.1f} s")
    print(
        f"from-scratch {args.configfile or 'tiny default'} `{args.target}` (--cores {args.cores}): "
        "median "
        f"{statistics.median(builds):.1f} s; samples {[round(t, 1) for t in builds]}"
    )
    if dry:
        print(
            f"paper preset dry run of `{args.target}`: median {statistics.median(dry):.2f} s; "
            f"samples {[round(t, 2) for t in dry]}"
        )


if __name__ == "__main__":
    main()
