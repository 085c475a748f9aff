"""A checkpoint's answers on a VLMEvalKit dataset, per turn, as VLMEvalKit's prediction files
(`<checkpoint>-turn<t>_<dataset>.tsv`), for its own evaluation (docs/evaluation.md)."""

import argparse
import os
from pathlib import Path

from sherlock.data.sharegpt import read_json
from sherlock.evaluation.answers import ANSWER_FROM
from sherlock.evaluation.vlmevalkit import prediction_file_name, write_predictions
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--responses", required=True, help="the evaluate job's responses")
    parser.add_argument("--checkpoint-name", required=True)
    parser.add_argument("--dataset", required=True, help="VLMEvalKit's dataset name (file stem)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--answer-from", choices=ANSWER_FROM, default="auto")
    args = parser.parse_args()
    rows = read_json(args.responses)
    folder = Path(args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    turns = len(rows[0]["turns"]) if rows else 0
    for turn in range(turns):
        name = prediction_file_name(args.checkpoint_name, args.dataset, turn)
        write_predictions(folder / name, rows, turn, args.answer_from)
    stage_summary(
        f"VLMEvalKit predictions {args.checkpoint_name} on {args.dataset}",
        f"{turns} files of {len(rows)} rows in {os.path.relpath(folder)}",
    )


if __name__ == "__main__":
    main()
