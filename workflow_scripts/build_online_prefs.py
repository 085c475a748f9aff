"""Stage III pairs: chosen = y3; rejected = M_{k-1} continuing the head of y0, image perturbed."""

import argparse

from sherlock.data.sharegpt import read_json
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
    build_pair_file(
        args,
        sources,
        backend,
        sampling_from_args(args),
        f"online-iter{args.iteration}",
        lambda stats: (f"rejected iter{args.iteration}", f"{len(chosen)} chosen -> {stats}"),
        provenance={"iteration": args.iteration},
    )


if __name__ == "__main__":
    main()
