"""Run one LLaMA-Factory training from its rendered YAML; the checkpoint appears only when done."""

import argparse

from sherlock.llamafactory import run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--yaml", required=True)
    parser.add_argument("--model-dir", required=True)
    args = parser.parse_args()
    run_training(args.yaml, args.model_dir)


if __name__ == "__main__":
    main()
