"""Stage III pairs: chosen = y3; rejected = M_{k-1} continuing the head of y0, image perturbed."""

import argparse
import json

import yaml

from sherlock.generation.cli import add_generation_arguments, backend_from_args, sampling_from_args
from sherlock.perturb import PerturbationConfig
from sherlock.perturbed_pairs import PairSource, generate_pairs, pair_stats, plan_pairs
from sherlock.sharegpt import read_json, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_generation_arguments(parser)
    parser.add_argument("--chosen", required=True, help="chosen.json of this iteration")
    parser.add_argument("--iteration", type=int, required=True)
    parser.add_argument("--perturbation", required=True, help="JSON of config 'perturbation'")
    parser.add_argument("--image-dir", required=True, help="where perturbed images go")
    parser.add_argument("--output", required=True)
    parser.add_argument("--summary", required=True)
    args = parser.parse_args()

    config = PerturbationConfig.from_dict(json.loads(args.perturbation))
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
    planned = plan_pairs(sources, config, args.seed, f"online-iter{args.iteration}", args.image_dir)
    rows = generate_pairs(
        planned,
        backend_from_args(args),
        sampling_from_args(args),
        config,
        model=args.model,
        provenance={"iteration": args.iteration},
    )
    write_json(args.output, rows)
    stats = pair_stats(rows)
    with open(args.summary, "w", encoding="utf-8") as handle:
        yaml.safe_dump(stats, handle, sort_keys=False)
    print(f"online_prefs iter{args.iteration}: {len(chosen)} chosen -> {len(rows)} pairs; {stats}")


if __name__ == "__main__":
    main()
