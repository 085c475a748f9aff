"""R0 answers every D_B question in batches; write sherlock_sft.json (2 rows per record)."""

import argparse
import json

from sherlock.data.prompts import load_prompt
from sherlock.data.sharegpt import read_json, sft_row_to_record, write_json
from sherlock.generation import GenerationRequest
from sherlock.generation.job import (
    add_generation_arguments,
    backend_from_args,
    finish_job,
    sampling_from_args,
)
from sherlock.sft.self_correction_data import answer_stats, sherlock_sft_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_generation_arguments(parser)
    parser.add_argument("--d-b", required=True)
    parser.add_argument(
        "--refine-prompt",
        default=None,
        help="refine prompt: a shipped wording (clean, trailing_spaces) or a custom file; "
        "default clean",
    )
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    d_b = [sft_row_to_record(row, origin=args.d_b) for row in read_json(args.d_b)]
    backend = backend_from_args(args, progress_for=args.output)
    requests = [GenerationRequest(key=r.id, image=r.image, user_text=r.question) for r in d_b]
    sampling = sampling_from_args(args)
    answers = dict(zip([r.id for r in d_b], backend.generate(requests, sampling), strict=True))

    def write_outputs() -> tuple[str, str]:
        refine = load_prompt("refine", args.refine_prompt)
        rows = sherlock_sft_rows(d_b, answers, refine, args.model)
        write_json(args.output, rows)
        stats = answer_stats(d_b, answers)
        print(json.dumps(stats))
        return (
            "sherlock_sft data",
            f"{len(d_b)} D_B records -> {len(rows)} rows; R0 answers with a "
            f"CONCLUSION {stats['with_conclusion']}/{stats['records']}, "
            f"matching the annotation {stats['correct']}/{stats['records']}",
        )

    finish_job(args, backend, write_outputs)


if __name__ == "__main__":
    main()
