"""Gather the evaluation summaries: the tidy table (parquet, CSV, JSON), the paper-style table
(HTML; each benchmark in its own metric, their average, the paper's averages when asked) and the
score-by-turn figure."""

import argparse
import json

from sherlock.evaluation.evaluate import accuracy_frame, accuracy_rows, paper_table
from sherlock.evaluation.metrics import METRIC_UNITS
from sherlock.evaluation.published import PAPER_AVERAGES
from sherlock.report.figures import accuracy_by_turn
from sherlock.report.html_table import write_table_page
from sherlock.runtime.atomic import atomic_output
from sherlock.runtime.step_summary import stage_summary

INTRO = (
    "Score of each checkpoint: 'direct' is the first answer; 'turn t' the answer after t "
    "self-correction turns (the REFINE prompt applied to the model's own previous answer); "
    "'self-corrected' the last turn; 'change' = last turn minus direct, averaged over benchmarks "
    "(each on 0-100; MME's score over its maximum)."
)
PAPER_NOTE = (
    " 'paper (average)': the averages the Sherlock paper publishes for its stages on "
    "Llama-3.2-Vision-11B over its eight benchmarks, scored by VLMEvalKit (base: the instruct "
    "model, direct only)."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("summaries", nargs="+", help="evaluation summary JSON files")
    parser.add_argument("--checkpoints", required=True, help="comma-separated pipeline order")
    parser.add_argument("--parquet", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--html", required=True)
    parser.add_argument("--figure", required=True)
    parser.add_argument(
        "--compare-with-paper", action="store_true", help="the paper's averages beside ours"
    )
    args = parser.parse_args()

    rows = []
    for path in args.summaries:
        with open(path, encoding="utf-8") as handle:
            summary = json.load(handle)
        rows += accuracy_rows(summary, summary["checkpoint"], summary["benchmark"])
    frame = accuracy_frame(rows, args.checkpoints.split(","))
    with atomic_output(args.parquet) as parquet, atomic_output(args.csv) as csv:
        frame.to_parquet(parquet, index=False)
        frame.to_csv(csv, index=False)
    with atomic_output(args.json) as json_file:
        frame.to_json(json_file, orient="records", indent=1)
    table = paper_table(frame, PAPER_AVERAGES if args.compare_with_paper else None)
    write_table_page(
        table,
        args.html,
        "Scores by checkpoint and self-correction turn",
        introduction(frame, args.compare_with_paper),
    )
    accuracy_by_turn(frame, args.figure)
    average = table["average"]
    stage_summary(
        "accuracy table",
        "; ".join(
            f"{name} {row['direct']:.1f}% -> {row.iloc[-2]:.1f}%"
            for name, row in average.iterrows()
        ),
    )


def introduction(frame, compare_with_paper: bool) -> str:
    """The page's paragraph: the turns, each benchmark's metric and its unread rows."""
    columns = ["benchmark", "metric", "malformed_rows", "vlmevalkit_differences"]
    metrics = frame.drop_duplicates("benchmark")[columns]
    parts = []
    for benchmark, metric, malformed, differences in metrics.itertuples(index=False):
        bad = f", {malformed} malformed rows not evaluated" if malformed else ""
        differ = json.loads(differences) if isinstance(differences, str) else {}
        if differ:
            bad += ", rows VLMEvalKit reads differently (docs/evaluation.md): " + ", ".join(
                f"{name} {count}" for name, count in differ.items()
            )
        parts.append(f"{benchmark}: {METRIC_UNITS[metric]}{bad}")
    return (
        INTRO + " Metrics: " + "; ".join(parts) + "." + (PAPER_NOTE if compare_with_paper else "")
    )


if __name__ == "__main__":
    main()
