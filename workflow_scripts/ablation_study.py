"""One variant of an ablation over its seeds (the seed study): the score of every checkpoint by
turn (mean ± spread), the blind baselines, the signature over the seeds and each of its claims
with its paired interval, Stage III's acceptance, and the seconds of each stage of each seed
(summed from the jobs' benchmark files). Writes JSON (what the report page and
evaluation.seed_study read), Markdown and the figure."""

import argparse
import json
from pathlib import Path
from statistics import mean

import pandas as pd
import yaml

from sherlock.evaluation.effect import run_scores
from sherlock.evaluation.seed_study import (
    acceptance_table,
    baseline_table,
    goal_table,
    interval_table,
    markdown_table,
    score_table,
    seed_scores,
    stage_seconds_table,
)
from sherlock.evaluation.signature import checks_as_rows, over_runs, signature_checks
from sherlock.report.figures import scores_over_seeds
from sherlock.runtime import atomic
from sherlock.runtime.step_summary import stage_summary


def stage_seconds(folders: dict[str, str]) -> dict[str, float]:
    """Seconds of the jobs of each of a run's folders: the last line of each benchmark file
    (a rerun appends one). Shared stages count in every run that uses them: these are the
    seconds one run alone would take."""
    seconds = {}
    for stage, folder in folders.items():
        files = sorted(Path(folder, "benchmarks").glob("*.tsv"))
        total = sum(float(pd.read_csv(path, sep="\t")["s"].iloc[-1]) for path in files)
        if files:
            seconds[stage] = total
    return seconds


def acceptance_rates(paths: list[str]) -> dict[int, float]:
    """Online iteration → the acceptance rate its chosen summary reports."""
    rates = {}
    for k, path in enumerate(paths, start=1):
        with open(path, encoding="utf-8") as handle:
            rates[k] = float(yaml.safe_load(handle)["acceptance_rate"])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", required=True)
    parser.add_argument(
        "--runs", required=True, help="JSON: seed → {accuracy, chosen: [...], folders: {...}}"
    )
    parser.add_argument("--paired", required=True, help="the ablation's paired.json")
    parser.add_argument("--json", required=True)
    parser.add_argument("--markdown", required=True)
    parser.add_argument("--figure", required=True)
    args = parser.parse_args()
    runs = {int(seed): run for seed, run in json.loads(args.runs).items()}
    seeds = sorted(runs)
    frames = []
    for seed in seeds:
        frame = pd.read_json(runs[seed]["accuracy"], orient="records")
        frame["seed"] = seed
        frames.append(frame)
    table = seed_scores(frames)
    firsts = pd.concat(frames).drop_duplicates("seed")
    baselines = {"majority answer": mean(firsts["majority_rate"]) * 100}
    if firsts["type_majority_rate"].notna().all():
        baselines["majority answer per question type"] = mean(firsts["type_majority_rate"]) * 100
    per_seed = [run_scores(frame) for frame in frames]
    scores = {
        checkpoint: over_runs(
            [seed_score[checkpoint].direct for seed_score in per_seed],
            [seed_score[checkpoint].last for seed_score in per_seed],
        )
        for checkpoint in dict.fromkeys(table["checkpoint"])
    }
    acceptances = [acceptance_rates(runs[seed]["chosen"]) for seed in seeds]
    iterations = sorted(set().union(*acceptances))
    acceptance = {k: mean(a[k] for a in acceptances) for k in iterations}
    checks = checks_as_rows(signature_checks(scores, baselines["majority answer"], acceptance))
    paired = json.loads(Path(args.paired).read_text(encoding="utf-8"))
    claims = [
        row for row in paired["rows"] if row["variant"] == args.variant and row["kind"] != "variant"
    ]
    signature = [goal for goal in paired["signature"] if goal["variant"] == args.variant]
    seconds = {str(seed): stage_seconds(runs[seed]["folders"]) for seed in seeds}
    study = {
        "variant": args.variant,
        "seeds": seeds,
        "scores": json.loads(table.to_json(orient="records")),
        "baselines": baselines,
        "acceptance": {str(k): [a[k] for a in acceptances] for k in iterations},
        "checks": checks,
        "claims": claims,
        "signature": signature,
        "bootstrap": paired["bootstrap"],
        "stage_seconds": seconds,
        "job_seconds": {seed: sum(by_stage.values()) for seed, by_stage in seconds.items()},
    }
    atomic.write_json(args.json, study)
    goals = goal_table(checks)
    goals["met"] = goals["met"].replace({"no": "**no**"})
    intervals = interval_table(signature)
    intervals["met"] = intervals["met"].replace({"no": "**no**"})
    sections = [
        score_table(table),
        baseline_table(baselines),
        goals,
        intervals,
        acceptance_table(study["acceptance"]),
        stage_seconds_table(seconds),
    ]
    atomic.write_text(args.markdown, "\n\n".join(map(markdown_table, sections)) + "\n")
    scores_over_seeds(table, baselines, args.figure)
    met = sum(goal["holds"] for goal in signature)
    stage_summary(
        f"study of {args.variant}",
        f"{len(seeds)} seeds; signature with paired intervals: {met} of {len(signature)} met",
    )


if __name__ == "__main__":
    main()
