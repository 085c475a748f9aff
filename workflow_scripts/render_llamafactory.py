"""Render the LLaMA-Factory YAML and dataset_info.json of one SFT run: what the model depends on.

How it runs (scratch folder, checkpointing, DeepSpeed, per-device batch, ...) is added at launch
(train_llamafactory.py --launch); --output-dir and --checkpointing put it in the file instead.
Paths in the files are relative (images to the working directory, the data to the file's
folder), so they stay right when the working directory moves.
"""

import argparse
import json
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
    parser.add_argument("--output-dir", default=None, help="scratch folder LLaMA-Factory writes")
    parser.add_argument("--checkpointing", default=None, help="JSON of config 'checkpointing'")
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
        media_dir=".",  # image paths are relative to the working directory the job runs in
        seed=args.seed,
        checkpointing=json.loads(args.checkpointing) if args.checkpointing else None,
        trust_remote_code=args.trust_remote_code,
    )
    info = dataset_info(args.name, args.data, relative_to=Path(args.info).parent)
    write_run_files(args.yaml, args.info, config, info)


if __name__ == "__main__":
    main()
