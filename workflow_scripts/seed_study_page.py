"""Does it work, over seeds? A seed study written by benchmarks/demo_study.py (its JSON and the
figure beside it) as a report page: the run's own page shows one seed, this one the spread."""

import argparse
import json
import shutil
from pathlib import Path

from sherlock.evaluation.seed_study import (
    acceptance_table,
    baseline_table,
    goal_table,
    score_table,
)
from sherlock.report.html_table import write_table_page
from sherlock.runtime import atomic


def introduction(study: dict) -> str:
    items = {row["items"] for row in study["scores"]}
    seeds = ", ".join(str(seed) for seed in study["seeds"])
    return (
        f"The demo (config/presets/demo.yaml) built once per seed ({seeds}) by "
        f"benchmarks/demo_study.py and scored on {' / '.join(map(str, sorted(items)))} questions "
        "of the synthetic test stream, which no setting was chosen on. Every cell is the mean over "
        "the seeds ± their standard deviation (percent right); the change is from the direct "
        "answer to the last correction turn. Read from the study's file, not from this run."
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
        "Does it work? The demo over seeds",
        introduction(study),
        index=False,
        more=[
            ("Answering blind (percent)", baseline_table(study["baselines"])),
            ("The signature over the seeds", goal_table(study["checks"])),
            ("Stage III acceptance", acceptance_table(study["acceptance"])),
        ],
    )
    with atomic.atomic_output(args.figure) as temporary:
        shutil.copyfile(args.study.with_suffix(".png"), temporary)
    print(f"{args.study}: {len(study['seeds'])} seeds shown")


if __name__ == "__main__":
    main()
