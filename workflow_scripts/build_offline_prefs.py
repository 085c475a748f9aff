"""Stage II pairs: the SFT model continues truncated annotated answers on perturbed images."""

import argparse
import json

import yaml

from sherlock.generation.cli import add_generation_arguments, backend_from_args, sampling_from_args
from sherlock.perturb import PerturbationConfig
from sherlock.perturbed_pairs import PairSource, generate_pairs, pair_stats, plan_pairs
from sherlock.sharegpt import read_json, sft_row_to_record, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_generation_arguments(parser)
    parser.add_argument("--data", required=True, help="annotated split (ShareGPT SFT rows)")
    parser.add_argument("--perturbation", required=True, help="JSON of config 'perturbation'")
    parser.add_argument("--image-dir", required=True, help="where perturbed images go")
    parser.add_argument("--output", required=True)
    parser.add_argument("--summary", required=True)
    args = parser.parse_args()

    config = PerturbationConfig.from_dict(json.loads(args.perturbation))
    records = [sft_row_to_record(row, origin=args.data) for row in read_json(args.data)]
    sources = [
        PairSource(r.id, r.image, r.question, chosen=r.answer, truncation_source=r.answer)
        for r in records
    ]
    planned = plan_pairs(sources, config, args.seed, "offline", args.image_dir)
    backend = backend_from_args(args)
    sampling = sampling_from_args(args)
    rows = generate_pairs(planned, backend, sampling, config, model=args.model)
    write_json(args.output, rows)
    stats = pair_stats(rows)
    with open(args.summary, "w", encoding="utf-8") as handle:
        yaml.safe_dump(stats, handle, sort_keys=False)
    print(
        f"offline_prefs: {len(records)} records -> {len(rows)} pairs ({config.recipe} recipe); "
        f"{stats}"
    )


if __name__ == "__main__":
    main()
