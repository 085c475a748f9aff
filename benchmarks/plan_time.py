"""How long a plan takes on a fresh clone: `snakemake -n <target>` per preset, nothing downloaded.

    python benchmarks/plan_time.py --repeats 3 --out benchmarks/results/plan_time.json

Each plan runs in an empty working directory (no data, no models, no benchmark files,
HF_HUB_OFFLINE=1), so every preset lists what it misses at the top of its plan. Wall time and CPU
time (user + system of the snakemake process) are recorded; the median of the repeats is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = [None, *sorted(p.name for p in (ROOT / "config" / "presets").glob("*.yaml"))]


def plan(preset: str | None, target: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one dry run in a fresh folder."""
    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                   "--directory", work, "-n", target, "--quiet", "rules"]  # fmt: skip
        if preset:
            command += ["--configfile", str(ROOT / "config" / "presets" / preset)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=work,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            raise RuntimeError(f"{preset} {target}: {result.stderr[-2000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--targets", nargs="+", default=["iter2", "all"])
    parser.add_argument("--out", default=None, help="JSON file of the results")
    args = parser.parse_args()
    rows = []
    for preset in PRESETS:
        for target in args.targets:
            runs = [plan(preset, target) for _ in range(args.repeats)]
            rows.append({
                "preset": preset or "(embedded default)", "target": target,
                "wall_s": round(statistics.median(r[0] for r in runs), 2),
                "cpu_s": round(statistics.median(r[1] for r in runs), 2),
            })  # fmt: skip
            print(f"{rows[-1]['preset']:<24} {target:<6} wall {rows[-1]['wall_s']:5.2f} s"
                  f"  cpu {rows[-1]['cpu_s']:5.2f} s", flush=True)  # fmt: skip
    load = os.getloadavg()[0]
    if args.out:
        Path(args.out).write_text(
            json.dumps({"repeats": args.repeats, "load_average_1min": load, "rows": rows}, indent=2)
            + "\n"  # fmt: skip
        )


if __name__ == "__main__":
    main()
