"""Sherlock preference training from a rendered run file; the checkpoint appears only when done."""

import argparse

from sherlock.pref_training import train_from_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_file", help="YAML: training arguments + model/dataset keys")
    parser.add_argument("--model-dir", required=True, help="final checkpoint folder")
    args = parser.parse_args()
    summary = train_from_file(args.run_file, args.model_dir)
    print(
        f"trained on {summary['records']} preference records, "
        f"mean training loss {summary['train_loss']:.4f}"
    )


if __name__ == "__main__":
    main()
