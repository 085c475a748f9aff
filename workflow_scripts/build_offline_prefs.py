"""Stage II pairs: the SFT model continues truncated annotated answers on perturbed images."""

import argparse

from sherlock.data.sharegpt import read_json, sft_row_to_record
from sherlock.generation.job import (
    add_generation_arguments,
    backend_from_args,
    sampling_from_args,
)
from sherlock.perturbation.pairs import PairSource, add_pair_arguments, build_pair_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_generation_arguments(parser)
    add_pair_arguments(parser)
    parser.add_argument("--data", required=True, help="annotated split (ShareGPT SFT rows)")
    parser.add_argument(
        "--rejected-prefill",
        choices=("head", "none"),
        default="head",
        help="prefix_l of the records: the head of Y* the continuation started from (head), or "
        "empty, as the authors' offline run read its records (none)",
    )
    args = parser.parse_args()

    records = [sft_row_to_record(row, origin=args.data) for row in read_json(args.data)]
    sources = [
        PairSource(r.id, r.image, r.question, chosen=r.answer, truncation_source=r.answer)
        for r in records
    ]
    backend = backend_from_args(args, progress_for=args.output)
    build_pair_file(
        args,
        sources,
        backend,
        sampling_from_args(args),
        "offline",
        lambda stats: (
            "offline prefs",
            f"{len(records)} records -> {stats['records']} pairs; {stats}",
        ),
        prefill_rejected=args.rejected_prefill == "head",
    )


if __name__ == "__main__":
    main()
