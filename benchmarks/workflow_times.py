"""Wall time of the workflow itself: a from-scratch tiny Stage I (or II), and planning the paper.

    .venv/bin/python benchmarks/workflow_times.py --target sft --repeats 3 --dry-repeats 5

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

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def build_time(target: str, cores: int) -> tuple[float, dict[str, float]]:
    """Wall time of the whole build, and each job's own seconds (Snakemake's benchmark files)."""
    with tempfile.TemporaryDirectory() as workdir:
        total = timed(
            [*SNAKEMAKE, "--directory", workdir, "--cores", str(cores), target], Path(workdir)
        )
        per_rule = {}
        for tsv in sorted((Path(workdir) / "results" / "benchmarks").glob("*.tsv")):
            per_rule[tsv.stem] = float(tsv.read_text().splitlines()[1].split("\t")[0])
        return total, per_rule


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
    args = parser.parse_args()
    runs = [build_time(args.target, args.cores) for _ in range(args.repeats)]
    builds = [total for total, _ in runs]
    dry = [paper_dry_run_time(args.target) for _ in range(args.dry_repeats)]
    for rule in runs[0][1]:
        samples = [per_rule[rule] for _, per_rule in runs]
        print(f"  job {rule:18s} median {statistics.median(samples):6.1f} s")
    print(
        f"from-scratch tiny `{args.target}` (--cores {args.cores}): median "
        f"{statistics.median(builds):.1f} s; samples {[round(t, 1) for t in builds]}"
    )
    print(
        f"paper preset dry run of `{args.target}`: median {statistics.median(dry):.2f} s; "
        f"samples {[round(t, 2) for t in dry]}"
    )


if __name__ == "__main__":
    main()
