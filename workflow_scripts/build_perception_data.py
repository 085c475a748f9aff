"""Scenes described cell by cell (ShareGPT SFT rows) for the tiny base's perception stage."""

import argparse

from sherlock.embedded.synthetic import build_perception_data
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", required=True, help="the ShareGPT JSON written")
    parser.add_argument("--image-dir", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    summary = build_perception_data(args.output, args.image_dir, args.n, args.image_size, args.seed)
    stage_summary("perception data", f"{summary} in {args.output}")


if __name__ == "__main__":
    main()
