"""Where a run stands: per stage, the jobs done (with their time), running and waiting.

    sherlock-progress                        # results/, the plan of the default target
    sherlock-progress --results out -- --configfile config/presets/qwen25vl_7b.yaml iter2

Read from the results folder while a run goes on (nothing is locked or written): a job is done
when Snakemake wrote its ``benchmarks/<job>.tsv`` (at its end; the time is its ``s`` column),
running when its ``logs/<job>.log`` is newer than that (a job truncates its log when it starts),
and the jobs still to run come from Snakemake's own plan (``snakemake -n --quiet rules``, given
the arguments after ``--``). A job killed without Snakemake noticing shows as running: the
age of its log's last line says which. The estimate of what remains is the mean time of the
finished jobs of each rule (iteration 2's from iteration 1's), summed.
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

# The rules that declare a benchmark file, by stage, with the name pattern of their job files.
RULES: list[tuple[str, str, str]] = [
    ("data", "synthetic_data", r"synthetic_data"),
    ("data", "source_records", r"source_records"),
    ("data", "tiny_model", r"tiny_model"),
    ("data", "tiny_judge", r"tiny_judge"),
    ("data", "perception", r"perception"),
    ("Stage I", "r0", r"r0"),
    ("Stage I", "sherlock_sft_data_shard", r"sherlock_sft_data_shard\d+"),
    ("Stage I", "sherlock_sft_data", r"sherlock_sft_data"),
    ("Stage I", "sft", r"sft"),
    # a LoRA stage's merge (rules/lora.smk); its waiting jobs are listed under the last stage
    ("Stage I", "merge_adapter", r"merge_(?:r0|sft)"),
    ("Stage II", "offline_prefs_shard", r"offline_prefs_shard\d+"),
    ("Stage II", "offline_prefs", r"offline_prefs"),
    ("Stage II", "offline", r"offline"),
    ("Stage II", "merge_adapter", r"merge_offline"),
    ("Stage III", "candidates_shard", r"candidates_iter(?P<k>\d+)_shard\d+"),
    ("Stage III", "candidates", r"candidates_iter(?P<k>\d+)"),
    ("Stage III", "chosen", r"chosen_iter(?P<k>\d+)"),
    ("Stage III", "rejected_shard", r"rejected_iter(?P<k>\d+)_shard\d+"),
    ("Stage III", "rejected", r"rejected_iter(?P<k>\d+)"),
    ("Stage III", "iter_model", r"iter(?P<k>\d+)"),
    ("Stage III", "merge_adapter", r"merge_iter(?P<k>\d+)"),
    ("evaluation", "evaluate_shard", r"evaluate_.+_shard\d+"),
    ("evaluation", "evaluate", r"evaluate_.+"),
]
STAGES = ("data", "Stage I", "Stage II", "Stage III", "evaluation")
_PATTERNS = [(stage, rule, re.compile(pattern)) for stage, rule, pattern in RULES]


@dataclass
class Job:
    name: str  # the job's log / benchmark file name, e.g. candidates_iter1
    rule: str
    stage: str  # "Stage III, iteration 1" for an online job
    state: str  # done, running
    seconds: float | None = None  # Snakemake's wall time (running: of the last attempt)
    log_age: float | None = None  # running: seconds since the log was last written


def classify(name: str) -> tuple[str, str] | None:
    """(stage, rule) of a job file name, or None for a job no benchmark times (a quick one)."""
    for stage, rule, pattern in _PATTERNS:
        match = pattern.fullmatch(name)
        if match:
            k = match.groupdict().get("k")
            return (f"{stage}, iteration {k}" if k else stage), rule
    return None


def benchmark_seconds(path: Path) -> float:
    """The wall time of a Snakemake benchmark file (its ``s`` column, last repeat)."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    try:
        return float(rows[-1]["s"])
    except (IndexError, KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: no wall time (column s) in this benchmark file") from None


def scan(results: Path, now: float | None = None) -> list[Job]:
    """The jobs with a benchmark or a log under ``results``: done or running."""
    now = time.time() if now is None else now
    benchmarks = {p.stem: p for p in (results / "benchmarks").glob("*.tsv")}
    logs = {p.stem: p for p in (results / "logs").glob("*.log")}
    jobs = []
    for name in sorted(set(benchmarks) | set(logs)):
        kind = classify(name)
        if kind is None:
            continue
        stage, rule = kind
        bench, log = benchmarks.get(name), logs.get(name)
        if bench is not None and (log is None or log.stat().st_mtime <= bench.stat().st_mtime):
            jobs.append(Job(name, rule, stage, "done", seconds=benchmark_seconds(bench)))
        else:  # a rerun keeps its last time, which serves as its estimate
            previous = benchmark_seconds(bench) if bench is not None else None
            age = now - log.stat().st_mtime
            jobs.append(Job(name, rule, stage, "running", seconds=previous, log_age=age))
    return jobs


def job_counts(text: str) -> dict[str, int]:
    """rule → jobs, from the last "Job stats" table of ``snakemake -n --quiet rules``."""
    counts: dict[str, int] = {}
    for line in text.split("Job stats:")[-1].splitlines():
        words = line.split()
        if len(words) == 2 and words[1].isdigit() and words[0] not in ("job", "total"):
            counts[words[0]] = int(words[1])
    return counts


def snakemake_plan(arguments: list[str]) -> dict[str, int]:
    """Jobs still to run per rule, by Snakemake's dry run (running jobs included)."""
    command = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--rerun-incomplete"]
    result = subprocess.run([*command, *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise RuntimeError("snakemake's dry run failed: " + " / ".join(tail))
    if "Nothing to be done" in result.stdout + result.stderr:
        return {}
    return job_counts(result.stdout + result.stderr)


def clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def report(jobs: list[Job], plan: dict[str, int] | None) -> str:
    """The table a user reads: stage by stage, then the estimate of what remains."""
    times: dict[str, list[float]] = defaultdict(list)
    for job in jobs:
        if job.seconds is not None:
            times[job.rule].append(job.seconds)
    mean = {rule: sum(values) / len(values) for rule, values in times.items()}
    running: dict[str, int] = defaultdict(int)
    for job in jobs:
        running[job.rule] += job.state == "running"
    stage_of = {rule: stage for stage, rule, _ in RULES}
    waiting = {
        rule: count - running[rule]
        for rule, count in (plan or {}).items()
        if rule in stage_of and count > running[rule]
    }
    lines = []
    order = {stage: n for n, stage in enumerate(STAGES)}
    stages = sorted(
        {job.stage for job in jobs} | {stage_of[rule] for rule in waiting},
        key=lambda s: (order[s.split(",")[0]], "," not in s, int(re.sub(r"\D", "", s) or 0)),
    )
    for stage in stages:
        lines.append(stage)
        for job in (j for j in jobs if j.stage == stage):
            if job.state == "done":
                lines.append(f"  done     {job.name:<32} {clock(job.seconds)}")
            else:
                lines.append(f"  running  {job.name:<32} log written {clock(job.log_age)} ago")
        for rule, count in waiting.items():
            if stage_of[rule] == stage:
                guess = f"≈ {clock(mean[rule])} each" if rule in mean else "no estimate yet"
                lines.append(f"  waiting  {rule + f' ×{count}':<32} {guess}")
    done = sum(job.state == "done" for job in jobs)
    lines.append(f"done {done}, running {sum(running.values())}, waiting {sum(waiting.values())}")
    if plan is None:
        lines.append("waiting: not known (no plan from Snakemake)")
        return "\n".join(lines)
    quick = sum(count for rule, count in plan.items() if rule not in stage_of)
    if quick:
        lines.append(f"plus {quick} quick job(s) without a benchmark (configs, reports)")
    left = [*waiting.items(), *((job.rule, 1) for job in jobs if job.state == "running")]
    known = sum(mean[rule] * n for rule, n in left if rule in mean)
    unknown = sum(n for rule, n in left if rule not in mean)
    if known == 0 and unknown:
        lines.append(f"remaining: no estimate yet (no job of these {unknown} has a finished twin)")
    elif left:
        lines.append(
            f"remaining: ≈ {clock(known)} of job time for the jobs whose rule has finished once"
            + (f"; {unknown} job(s) without an estimate" if unknown else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", default="results", help="the run's results_dir")
    parser.add_argument(
        "--no-plan", action="store_true", help="do not ask Snakemake which jobs are still to run"
    )
    parser.add_argument(
        "snakemake", nargs="*", help="after --: Snakemake's arguments of the run (target, ...)"
    )
    args = parser.parse_args(argv)
    results = Path(args.results)
    if not results.is_dir():
        sys.exit(f"{results}: no such results folder (give the run's results_dir with --results)")
    plan = None
    if not args.no_plan:
        try:
            plan = snakemake_plan(args.snakemake)
        except RuntimeError as error:
            print(error, file=sys.stderr)
    print(report(scan(results), plan))


if __name__ == "__main__":
    main()
