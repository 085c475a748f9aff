"""Render the LLaMA-Factory YAML and dataset_info.json of one SFT run (and, for a filter other
than LLaMA-Factory's bicubic, the data with its images scaled by us: sherlock.sft.fitted_images)."""

import argparse
import json
import os
from pathlib import Path

from sherlock.data.images import LLAMAFACTORY_MAX_PIXELS, LLAMAFACTORY_MIN_PIXELS
from sherlock.data.sharegpt import read_json, write_json
from sherlock.sft.fitted_images import fit_row_images
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
        "--image-resample",
        choices=("bicubic", "nearest"),
        default="bicubic",
        help="the filter images are scaled with; not bicubic: into --fitted-images first",
    )
    parser.add_argument("--fitted-data", help="the data with scaled images (not bicubic)")
    parser.add_argument("--fitted-images", help="where the scaled images go (not bicubic)")
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
    data = args.data
    if args.image_resample != "bicubic":
        if not (args.fitted_data and args.fitted_images):
            parser.error("--image-resample other than bicubic needs --fitted-data/--fitted-images")
        hparams = json.loads(args.hparams)
        rows, counts = fit_row_images(
            read_json(args.data),
            hparams.get("image_min_pixels") or LLAMAFACTORY_MIN_PIXELS,
            hparams.get("image_max_pixels") or LLAMAFACTORY_MAX_PIXELS,
            args.image_resample,
            args.fitted_images,
            os.getcwd(),
        )
        write_json(args.fitted_data, rows)
        data = args.fitted_data
        scaled = counts["scaled_copies"]
        print(f"{counts['images']} images, {scaled} scaled ({args.image_resample})")
    write_run_files(args.yaml, args.info, config, dataset_info(args.name, data))


if __name__ == "__main__":
    main()
