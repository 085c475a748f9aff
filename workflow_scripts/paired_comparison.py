"""An ablation's paired differences (sherlock.evaluation.paired): every variant against the
baseline at each benchmark, checkpoint and turn, and the method's claims within each variant,
each with its bootstrap interval; as JSON, CSV, a report page and a figure."""

import argparse
import json
import sys
from dataclasses import asdict

import pandas as pd

from sherlock.evaluation.paired import (
    Bootstrap,
    OutcomeError,
    claim_rows,
    difference_table,
    read_outcomes,
    signature_goals,
    variant_rows,
)
from sherlock.evaluation.seed_study import interval_table
from sherlock.report.figures import paired_intervals
from sherlock.report.html_table import write_table_page
from sherlock.runtime import atomic
from sherlock.runtime.step_summary import stage_summary


def introduction(settings: Bootstrap, baseline: str, variants: int) -> str:
    versus = (
        f"; and every other variant minus {baseline} at the same checkpoint and turn"
        if variants > 1
        else ""
    )
    return (
        "Differences in percent right (points) on the same questions and seeds: within each "
        "variant, every checkpoint's last self-correction turn minus its direct answer, and the "
        f"last iteration's direct answer minus SFT's{versus}. Each estimate is the mean over the "
        "seeds of the per-seed difference; its interval the "
        f"{settings.confidence:.0%} percentile interval of {settings.resamples} bootstrap "
        "resamples (seeds drawn with replacement, then each drawn seed's questions, a "
        f"question's two answers together; resampling seed {settings.seed}). A difference whose "
        "interval excludes zero is more than the noise of these questions and seeds."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--runs", required=True, help="JSON: variant → seed → benchmark → checkpoint → file"
    )
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--json", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--html", required=True)
    parser.add_argument("--figure", required=True)
    args = parser.parse_args()
    settings = Bootstrap(args.resamples, args.bootstrap_seed, args.confidence)
    files = json.loads(args.runs)
    try:
        runs = {
            variant: {
                int(seed): {
                    benchmark: {name: read_outcomes(path) for name, path in by_name.items()}
                    for benchmark, by_name in by_benchmark.items()
                }
                for seed, by_benchmark in by_seed.items()
            }
            for variant, by_seed in files.items()
        }
    except OutcomeError as error:
        sys.exit(f"error: {error}")
    claims = claim_rows(runs, settings)
    versus = variant_rows(runs, args.baseline, settings)
    goals = signature_goals(claims)
    rows = claims + versus
    atomic.write_json(
        args.json,
        {
            "baseline": args.baseline,
            "bootstrap": asdict(settings),
            "rows": rows,
            "signature": goals,
        },
    )
    with atomic.atomic_output(args.csv) as temporary:
        pd.DataFrame(rows).to_csv(temporary, index=False)
    more = [("The signature, each claim with its interval", _goals_frame(goals))]
    if versus:
        more.append((f"Each variant minus {args.baseline}", difference_table(versus)))
    write_table_page(
        difference_table(claims),
        args.html,
        "Paired differences with intervals",
        introduction(settings, args.baseline, len(runs)),
        index=False,
        more=more,
    )
    paired_intervals(rows, args.figure)
    excluding = sum(row["excludes_zero"] for row in rows)
    met = sum(goal["holds"] for goal in goals)
    stage_summary(
        "ablation comparison",
        f"{len(runs)} variants, {len(rows)} differences, {excluding} intervals exclude zero; "
        f"signature: {met} of {len(goals)} claims met",
    )


def _goals_frame(goals: list[dict]) -> pd.DataFrame:
    frame = interval_table(goals)
    frame.insert(0, "variant", [goal["variant"] for goal in goals])
    frame.insert(1, "benchmark", [goal["benchmark"] for goal in goals])
    return frame


if __name__ == "__main__":
    main()
