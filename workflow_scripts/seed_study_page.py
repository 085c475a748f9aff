"""Does it work, over seeds? A seed study (one variant of an ablation over its seeds, written by
`snakemake ablations`: its JSON and the figure beside it) as a report page: the run's own page
shows one seed, this one the spread and, where the study has them, the signature's claims with
their paired intervals and the seconds of each stage."""

import argparse
import json
import shutil
from pathlib import Path

from sherlock.evaluation.seed_study import (
    acceptance_table,
    baseline_table,
    goal_table,
    interval_table,
    score_table,
    stage_seconds_table,
)
from sherlock.report.html_table import write_table_page
from sherlock.runtime import atomic


def introduction(study: dict) -> str:
    items = {row["items"] for row in study["scores"]}
    seeds = ", ".join(str(seed) for seed in study["seeds"])
    variant = f"The variant {study['variant']}" if "variant" in study else "The demo"
    return (
        f"{variant} built once per seed ({seeds}) and scored on "
        f"{' / '.join(map(str, sorted(items)))} held-out questions per seed. Every cell is the "
        "mean over the seeds ± their standard deviation (percent right); the change is from the "
        "direct answer to the last correction turn. Each claim of the signature is then given "
        "with its paired bootstrap interval (the same questions and seeds; seeds resampled, then "
        "questions within them): it is met when the whole interval is on the predicted side of "
        "zero. Read from the study's file."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", required=True, type=Path, help="demo_study.json")
    parser.add_argument("--html", required=True)
    parser.add_argument("--figure", required=True, help="where the study's figure is copied")
    args = parser.parse_args()
    study = json.loads(args.study.read_text(encoding="utf-8"))
    write_table_page(
        score_table(study["scores"]),
        args.html,
        f"Does it work? {study.get('variant', 'The demo')} over seeds",
        introduction(study),
        index=False,
        more=[
            ("Answering blind (percent)", baseline_table(study["baselines"])),
            ("The signature over the seeds", goal_table(study["checks"])),
            *(
                [("The signature, each claim with its paired interval", signature)]
                if (signature := interval_table(study.get("signature", []))).size
                else []
            ),
            ("Stage III acceptance", acceptance_table(study["acceptance"])),
            *(
                [("Seconds of each stage's jobs", stage_seconds_table(study["stage_seconds"]))]
                if study.get("stage_seconds")
                else []
            ),
        ],
    )
    with atomic.atomic_output(args.figure) as temporary:
        shutil.copyfile(args.study.with_suffix(".png"), temporary)
    print(f"{args.study}: {len(study['seeds'])} seeds shown")


if __name__ == "__main__":
    main()
