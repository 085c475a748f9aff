"""Where a run stands (sherlock-progress): jobs done with their times, running, waiting."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sherlock.runtime.progress import (
    RULES,
    benchmark_seconds,
    classify,
    job_counts,
    main,
    report,
    scan,
    snakemake_plan,
)

ROOT = Path(__file__).resolve().parents[1]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def finished(results: Path, name: str, seconds: float, at: float) -> None:
    """A job as Snakemake leaves it: its log, then (at its end) its benchmark file."""
    log, bench = results / "logs" / f"{name}.log", results / "benchmarks" / f"{name}.tsv"
    for path in (log, bench):
        path.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("[sherlock] done\n")
    bench.write_text(HEADER + f"{seconds:.4f}\t0:00:00\t100\t200\t-\t-\t1\t2\t50\t3\n")
    os.utime(log, (at - 1, at - 1))
    os.utime(bench, (at, at))


def started(results: Path, name: str, at: float) -> None:
    log = results / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("generate:  40%|####      |\r")
    os.utime(log, (at, at))


def test_done_running_and_waiting_with_an_estimate(tmp_path: Path) -> None:
    now = 1_000_000.0
    for name, seconds in (("tiny_model", 6), ("r0", 62), ("sft", 80), ("offline", 30)):
        finished(tmp_path, name, seconds, now - 500)
    finished(tmp_path, "candidates_iter1", 40, now - 300)
    finished(tmp_path, "iter1", 20, now - 100)
    finished(tmp_path, "r0_config", 1, now - 900)  # no benchmark is kept for quick jobs: ignored
    started(tmp_path, "candidates_iter2", now - 5)
    finished(tmp_path, "offline_prefs", 10, now - 400)
    started(tmp_path, "offline_prefs", now - 2)  # rerun: its log is newer than its benchmark
    jobs = scan(tmp_path, now=now)
    states = {job.name: (job.stage, job.state) for job in jobs}
    assert states["candidates_iter2"] == ("Stage III, iteration 2", "running")
    assert states["offline_prefs"] == ("Stage II", "running")
    assert states["iter1"] == ("Stage III, iteration 1", "done") and "r0_config" not in states

    # Snakemake's plan counts the running jobs too
    plan = {"offline_prefs": 1, "candidates": 1, "chosen": 1, "iter_model": 1, "iter_config": 1}
    text = report(jobs, plan)
    lines = text.splitlines()
    assert lines.index("Stage I") < lines.index("Stage III, iteration 1") < lines.index(
        "Stage III, iteration 2"
    ) < lines.index("Stage III")
    assert re.search(r"done +r0 +0:01:02", text)
    assert re.search(r"running +candidates_iter2 +log written 0:00:05 ago", text)
    assert re.search(r"waiting +chosen ×1 +no estimate yet", text)
    assert re.search(r"waiting +iter_model ×1 +≈ 0:00:20 each", text)
    assert "candidates ×" not in text  # its one planned job is the running one
    assert "done 6, running 2, waiting 2" in text
    assert "plus 1 quick job(s)" in text
    # iter2 (20 s like iter1) + candidates_iter2 (40 s) + offline_prefs (10 s); chosen unknown
    assert "remaining: ≈ 0:01:10 of job time" in text and "1 job(s) without an estimate" in text
    assert "waiting: not known" in report(jobs, None)


def test_every_benchmarked_rule_is_known() -> None:
    """The catalogue names every rule whose jobs write a benchmark file, and their file names."""
    rules = {rule for _, rule, _ in RULES}
    found = set()
    for path in (ROOT / "rules").glob("*.smk"):
        # rules may sit indented under an `if` (the perception stage, the VLMEvalKit rules)
        text = path.read_text(encoding="utf-8")
        for block in re.split(r"(?m)^(?=[ \t]*(?:rule |use rule ))", text):
            name = re.match(r"\s*(?:use rule \w+ as |rule )(\w+)", block)
            if name and re.search(r"^\s+benchmark:", block, re.M):
                found.add(name.group(1))
    assert found == rules
    assert classify("evaluate_heldout_iter2") == ("evaluation", "evaluate")
    assert classify("rejected_iter3_shard1") == ("Stage III, iteration 3", "rejected_shard")
    assert classify("training_curves_sft") is None


def test_snakemakes_own_plan_is_read(tmp_path: Path) -> None:
    """A real dry run of the default target in an empty folder: every job is still to run."""
    plan = snakemake_plan(["-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path)])
    assert plan["r0"] == 1 and plan["candidates"] == 2 and plan["iter_model"] == 2
    assert plan["evaluate"] == 6 and "total" not in plan
    assert job_counts("Job stats:\njob  count\n---  -----\nr0  1\ntotal  1\n") == {"r0": 1}


def test_bad_files_are_named(tmp_path: Path, capsys) -> None:
    bench = tmp_path / "r0.tsv"
    bench.write_text("garbage\n")
    with pytest.raises(ValueError, match=r"r0\.tsv: no wall time \(column s\)"):
        benchmark_seconds(bench)
    with pytest.raises(SystemExit, match="no such results folder"):
        main(["--results", str(tmp_path / "missing"), "--no-plan"])
    (tmp_path / "logs").mkdir()
    main(["--results", str(tmp_path), "--no-plan"])
    assert "done 0, running 0, waiting 0" in capsys.readouterr().out
