"""The synthetic held-out split (LLaVA-CoT JSONL) as a benchmark in the documented form."""

import argparse
import json
import os
import sys

from sherlock.data.records import load_records
from sherlock.data.response import extract_answer
from sherlock.evaluation.benchmark_files import write_benchmark
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="test.jsonl of the synthetic dataset")
    parser.add_argument("--image-root", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    result = load_records(args.source, "llava_cot", args.image_root)
    if result.rejects:  # the held-out split is built by us: a reject is a bug, not noise
        sys.exit(f"error: {args.source}: {result.summary_line()}")
    folder = os.path.dirname(os.path.abspath(args.output))
    # The question type of each record (count, colour, ...): the evaluation's blind baselines
    # answer each type with its most common answer.
    with open(args.source, encoding="utf-8") as handle:
        kinds = {row["id"]: row.get("kind") for row in map(json.loads, filter(str.strip, handle))}
    rows = [
        {
            "id": record.id,
            "image": os.path.relpath(os.path.abspath(record.image), folder),
            "question": record.question,
            "answer": extract_answer(record.answer),
            **({"meta": {"question_type": kinds[record.id]}} if kinds.get(record.id) else {}),
        }
        for record in result.records
    ]
    write_benchmark(args.output, rows)
    stage_summary("heldout benchmark", f"{len(rows)} items (exact match) from {args.source}")


if __name__ == "__main__":
    main()
