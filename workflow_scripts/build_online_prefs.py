"""Stage III pairs: chosen = y3; rejected = M_{k-1} continuing the head of y0, image perturbed."""

import argparse

from sherlock.data.sharegpt import read_json
from sherlock.generation.job import (
    add_generation_arguments,
    backend_from_args,
    finish_progress,
    sampling_from_args,
)
from sherlock.perturbation.pairs import PairSource, add_pair_arguments, build_pair_file
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_generation_arguments(parser)
    add_pair_arguments(parser)
    parser.add_argument("--chosen", required=True, help="chosen.json of this iteration")
    parser.add_argument("--iteration", type=int, required=True)
    args = parser.parse_args()

    chosen = read_json(args.chosen)
    sources = [
        PairSource(
            row["id"],
            row["images"][0],
            row["question"],
            chosen=row["turns"][3],
            truncation_source=row["turns"][0],
        )
        for row in chosen
    ]
    backend = backend_from_args(args, progress_for=args.output)
    stats = build_pair_file(
        args,
        sources,
        backend,
        sampling_from_args(args),
        f"online-iter{args.iteration}",
        provenance={"iteration": args.iteration},
    )
    if stats is None:  # a shard job: its chunks are saved, the gathering job writes
        return
    finish_progress(backend)
    stage_summary(f"rejected iter{args.iteration}", f"{len(chosen)} chosen -> {stats}")


if __name__ == "__main__":
    main()
