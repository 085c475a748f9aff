"""Build the embedded synthetic dataset (LLaVA-CoT JSONL + PNG images)."""

import argparse
from pathlib import Path

from sherlock.embedded.synthetic import HELDOUT_STREAMS, build_synthetic_dataset
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--n-train", type=int, required=True)
    parser.add_argument("--n-test", type=int, required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--heldout", choices=HELDOUT_STREAMS, default="test")
    args = parser.parse_args()
    counts = build_synthetic_dataset(
        Path(args.out_dir), args.n_train, args.n_test, args.image_size, args.seed, args.heldout
    )
    stage_summary("synthetic data", f"{counts} in {args.out_dir}")


if __name__ == "__main__":
    main()
