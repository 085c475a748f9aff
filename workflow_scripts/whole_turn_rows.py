"""A split's SFT rows with every turn of a multi-turn record (config source.multi_turn: whole).

The turns are read from the source itself (its records, images not checked again: the split's
records passed that check), so a split made by any version gets them back."""

import argparse
import sys

from sherlock.data.records import SourceDataError, load_records
from sherlock.data.sharegpt import read_json, with_whole_turns, write_json
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True)
    parser.add_argument("--format", required=True, choices=("llava_cot", "sharegpt"))
    parser.add_argument("--image-root", required=True)
    parser.add_argument("--split", required=True, help="D_A.json or D_B.json")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    records = load_records(args.source, args.format, args.image_root, check_images=False).records
    try:
        rows = with_whole_turns(read_json(args.split), records, origin=args.split)
    except SourceDataError as error:
        sys.exit(f"error: {error}")
    write_json(args.output, rows)
    multi = sum(len(row["conversations"]) > 2 for row in rows)
    stage_summary("whole turns", f"{args.split}: {len(rows)} rows, {multi} with earlier turns kept")


if __name__ == "__main__":
    main()
