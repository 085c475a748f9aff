"""A VLMEvalKit dataset TSV as a benchmark: the JSONL form and its pictures, decoded once."""

import argparse
import sys

from sherlock.evaluation.vlmevalkit import convert
from sherlock.runtime import atomic
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tsv", required=True, help="VLMEvalKit dataset file")
    parser.add_argument("--metric", required=True, help="the benchmark's metric (row kinds)")
    parser.add_argument("--image-root", default=None, help="image_path root; default: its folder")
    parser.add_argument("--output", required=True, help="benchmark JSONL")
    parser.add_argument("--images", required=True, help="folder of the decoded pictures")
    parser.add_argument("--summary", required=True, help="rows read, kept and malformed (JSON)")
    args = parser.parse_args()
    try:
        result = convert(args.tsv, args.output, args.images, args.metric, args.image_root)
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")
    atomic.write_json(args.summary, result.summary())
    for bad in result.malformed:
        print(f"malformed row: {bad.line()}")
    if not result.items:
        sys.exit(f"error: {args.tsv}: no row can be evaluated ({len(result.malformed)} malformed)")
    stage_summary(f"benchmark {args.tsv}", result.line())


if __name__ == "__main__":
    main()
