"""Source data → validated canonical records (JSONL), rejects and a summary."""

import argparse
import sys

from sherlock.data.records import (
    SourceDataError,
    check_invalid_fraction,
    load_records,
    records_to_rows,
    rejects_to_rows,
    write_jsonl,
)
from sherlock.runtime import atomic
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True)
    parser.add_argument("--format", required=True, choices=["llava_cot", "sharegpt"])
    parser.add_argument("--image-root", required=True)
    parser.add_argument("--max-invalid-fraction", type=float, required=True)
    parser.add_argument("--max-image-pixels", type=int, required=True)
    parser.add_argument("--records", required=True)
    parser.add_argument("--rejects", required=True)
    parser.add_argument("--summary", required=True)
    args = parser.parse_args()
    try:
        result = load_records(
            args.source, args.format, args.image_root, max_image_pixels=args.max_image_pixels
        )
    except SourceDataError as error:
        sys.exit(f"error: {error}")
    write_jsonl(args.rejects, rejects_to_rows(result.rejects))
    for reject in result.rejects[:20]:
        print(
            f"rejected {reject.file} record {reject.record} (id {reject.id}): "
            f"{reject.field}: {reject.reason}"
        )
    if len(result.rejects) > 20:
        print(f"... and {len(result.rejects) - 20} more in {args.rejects}")
    stage_summary("source records", result.summary_line().split(": ", 1)[1])
    try:
        check_invalid_fraction(result, args.max_invalid_fraction, args.rejects)
    except SourceDataError as error:
        sys.exit(f"error: {error}")
    write_jsonl(args.records, records_to_rows(result.records))
    atomic.write_json(args.summary, {"source": args.source, **result.summary()}, indent=2)


if __name__ == "__main__":
    main()
