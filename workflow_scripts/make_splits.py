"""Valid records → D_A.json, D_B.json (ShareGPT SFT rows) and pool_k.json (question + image)."""

import argparse
import sys

from sherlock.data.records import SourceDataError, read_jsonl, rows_to_records
from sherlock.data.sharegpt import prompt_row, record_to_sft_row, write_json
from sherlock.data.splits import make_splits
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", required=True)
    parser.add_argument("--d-a", type=int, required=True)
    parser.add_argument("--d-b", type=int, required=True)
    parser.add_argument("--pool", type=int, required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out-d-a", required=True)
    parser.add_argument("--out-d-b", required=True)
    parser.add_argument("--pool-pattern", required=True, help="path with {k}")
    args = parser.parse_args()
    records = rows_to_records(read_jsonl(args.records), origin=args.records)
    try:
        splits = make_splits(records, args.d_a, args.d_b, args.pool, args.iterations, args.seed)
    except SourceDataError as error:
        sys.exit(f"error: {error}")
    write_json(args.out_d_a, [record_to_sft_row(r) for r in splits.d_a])
    write_json(args.out_d_b, [record_to_sft_row(r) for r in splits.d_b])
    for k, pool in enumerate(splits.pools, start=1):
        write_json(
            args.pool_pattern.format(k=k), [prompt_row(r.id, r.question, r.image) for r in pool]
        )
    used = len(splits.d_a) + len(splits.d_b) + sum(len(p) for p in splits.pools)
    stage_summary(
        "splits",
        f"{len(records)} records: D_A {len(splits.d_a)}, D_B {len(splits.d_b)}, "
        f"pools {[len(p) for p in splits.pools]}, {len(records) - used} unused",
    )


if __name__ == "__main__":
    main()
