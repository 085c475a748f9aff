"""Does it work? This run's scores per checkpoint beside the blind baselines, and the method's
signature (R0 worse after self-correction, each Sherlock stage not, each better than the last)
checked goal by goal."""

import argparse
import json

import pandas as pd
import yaml

from sherlock.evaluation.effect import baselines, effect_table, run_scores, single_majority_rate
from sherlock.evaluation.signature import checks_as_rows, signature_checks
from sherlock.report.html_table import write_table_page
from sherlock.runtime import atomic
from sherlock.runtime.step_summary import stage_summary

INTRO = (
    "One run (one seed): the score of each checkpoint's direct answer and of every "
    "self-correction turn (mean over benchmarks, 0-100), the change the turns made, and how many "
    "distinct answers it gave; below, what answering without looking at the image scores, and "
    "each goal of the method's signature with the numbers. One seed is not evidence: "
    "an ablation (docs/ablations.md) repeats a run over seeds with paired intervals."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accuracy", required=True, help="eval/accuracy.json")
    parser.add_argument("--chosen-summaries", nargs="*", default=[], help="chosen_k summaries")
    parser.add_argument("--html", required=True)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    frame = pd.read_json(args.accuracy, orient="records")
    acceptance = {}
    for k, path in enumerate(args.chosen_summaries, start=1):
        with open(path, encoding="utf-8") as handle:
            acceptance[k] = float(yaml.safe_load(handle)["acceptance_rate"])
    checks = signature_checks(run_scores(frame), single_majority_rate(frame), acceptance)
    rows = checks_as_rows(checks)
    goals = pd.DataFrame(rows).rename(columns={"holds": "met"})
    goals["met"] = goals["met"].map({True: "yes", False: "no", None: "–"})
    write_table_page(
        effect_table(frame),
        args.html,
        "Does it work?",
        INTRO,
        more=[("Answering blind (percent)", baselines(frame)), ("The signature", goals)],
    )
    atomic.write_json(
        args.json,
        {
            "checks": rows,
            "acceptance": acceptance,
            "table": json.loads(effect_table(frame).to_json(orient="index")),
        },
    )
    met = sum(bool(row["holds"]) for row in rows)
    stage_summary("does it work", f"{met} of {len(rows)} goals of the signature met")


if __name__ == "__main__":
    main()
