"""Does Sherlock's training help? The demo's seed study, built as an ablation
(config/ablations/demo_study.yaml over config/presets/demo.yaml: 3 seeds × 1000 questions of the
synthetic test stream, one DAG), then copied to ``<out>.{json,md,png}`` (default
benchmarks/results/demo_study, the file the demo preset's report shows) with the paired
comparison beside it (``<out>_paired.{json,csv,png}``).

    .venv/bin/python benchmarks/demo_study.py --cores 2
    .venv/bin/python benchmarks/demo_study.py --seeds 11 12 --workdir /tmp/demo_study
    .venv/bin/python benchmarks/demo_study.py --no-build   # copy a finished study only

The build is ``snakemake ablations`` (docs/ablations.md): an interrupted study resumes where it
stopped. The seconds of each stage of each seed, summed from the jobs' benchmark files, are in
the study (``stage_seconds``; on the machine and load the build ran under).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "config" / "presets" / "demo.yaml"
ABLATION = ROOT / "config" / "ablations" / "demo_study.yaml"
VARIANT = "demo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir", type=Path, default=ROOT, help="snakemake's --directory (results under it)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the ablation config's")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--no-build", action="store_true", help="only copy the finished study")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "demo_study",
        help="path prefix of the .json, .md and .png written",
    )
    args = parser.parse_args()
    configs = [str(PRESET), str(ABLATION)]
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.seeds:
        overlay = workdir / "demo_study_seeds.yaml"
        overlay.write_text(yaml.safe_dump({"ablations": {"seeds": args.seeds}}))
        configs.append(str(overlay))
    if not args.no_build:
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "-s",
                str(ROOT / "Snakefile"),
                "--directory",
                str(workdir),
                "--cores",
                str(args.cores),
                "ablations",
                "--configfile",
                *configs,
            ],
            cwd=workdir,
            check=True,
        )
        print(f"built in {time.perf_counter() - start:.0f} s", flush=True)
    results = workdir / yaml.safe_load(ABLATION.read_text())["results_dir"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".md", ".png"):
        shutil.copyfile(results / "study" / f"{VARIANT}{suffix}", args.out.with_suffix(suffix))
    paired = args.out.with_name(args.out.name + "_paired")
    shutil.copyfile(results / "comparison" / "paired.json", paired.with_suffix(".json"))
    shutil.copyfile(results / "comparison" / "paired.csv", paired.with_suffix(".csv"))
    shutil.copyfile(results / "report" / "paired.png", paired.with_suffix(".png"))
    print((results / "study" / f"{VARIANT}.md").read_text())


if __name__ == "__main__":
    main()
