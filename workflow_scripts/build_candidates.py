"""Stage III candidates: M_{k-1} answers pool k, then corrects itself three times (batched)."""

import argparse

from sherlock.data.prompts import load_prompt
from sherlock.data.sharegpt import read_json, sft_row_to_record, write_json
from sherlock.generation.job import (
    add_generation_arguments,
    backend_from_args,
    finish_job,
    sampling_from_args,
)
from sherlock.online.self_consistency import generate_candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_generation_arguments(parser)
    parser.add_argument("--pool", required=True, help="pool_k.json (question + image rows)")
    parser.add_argument("--iteration", type=int, required=True)
    parser.add_argument(
        "--refine-prompt",
        default=None,
        help="refine prompt: a shipped wording (clean, trailing_spaces) or a custom file; "
        "default clean",
    )
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    items = [sft_row_to_record(row, origin=args.pool) for row in read_json(args.pool)]
    backend = backend_from_args(args, progress_for=args.output)
    rows = generate_candidates(
        backend,
        items,
        load_prompt("refine", args.refine_prompt),
        sampling_from_args(args),
        provenance={"iteration": args.iteration, "model": args.model},
    )

    def write_outputs() -> tuple[str, str]:
        write_json(args.output, rows)
        with_answer = [sum(row["answers"][t] is not None for row in rows) for t in range(4)]
        return (
            f"candidates iter{args.iteration}",
            f"{len(rows)} pool items x 4 turns by {args.model}; "
            f"turns with a CONCLUSION (y0..y3): {with_answer}",
        )

    finish_job(args, backend, write_outputs)


if __name__ == "__main__":
    main()
