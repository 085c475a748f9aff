"""Render the LLaMA-Factory YAML and dataset_info.json of one SFT run."""

import argparse
import json
import os
from pathlib import Path

from sherlock.sft.llamafactory import dataset_info, train_config, write_run_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="the ShareGPT JSON to train on")
    parser.add_argument("--name", required=True, help="dataset name in dataset_info.json")
    parser.add_argument("--model", required=True)
    parser.add_argument("--template", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--hparams", required=True, help="JSON object of LLaMA-Factory keys")
    parser.add_argument("--output-dir", required=True, help="scratch folder LLaMA-Factory writes")
    parser.add_argument("--checkpointing", required=True, help="JSON of config 'checkpointing'")
    parser.add_argument("--yaml", required=True)
    parser.add_argument("--info", required=True)
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the model folder run its own code (off unless the config opts in)",
    )
    args = parser.parse_args()
    config = train_config(
        model=args.model,
        dataset=args.name,
        dataset_dir=Path(args.info).parent,
        output_dir=args.output_dir,
        template=args.template,
        hparams=json.loads(args.hparams),
        media_dir=os.getcwd(),
        seed=args.seed,
        checkpointing=json.loads(args.checkpointing),
        trust_remote_code=args.trust_remote_code,
    )
    write_run_files(args.yaml, args.info, config, dataset_info(args.name, args.data))


if __name__ == "__main__":
    main()
