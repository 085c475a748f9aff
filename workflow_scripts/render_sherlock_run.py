"""Render the run file of one Sherlock preference training (read by train_sherlock.py): what the
model depends on. How it runs (scratch folder, checkpointing, DeepSpeed, per-device batch, the
refine prompt's path, ...) is added at launch (train_sherlock.py --launch); --output-dir,
--checkpointing and --refine-prompt put it in the file instead."""

import argparse
import json

from sherlock.runtime import atomic
from sherlock.runtime.resumable_training import checkpoint_keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="initial policy = frozen reference")
    parser.add_argument("--data", required=True, help="preference JSON")
    parser.add_argument("--hparams", required=True, help="JSON of training arguments")
    parser.add_argument("--perturbation", required=True, help="JSON of config 'perturbation'")
    parser.add_argument("--refine-prompt", default=None)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--output-dir", default=None, help="scratch folder of the trainer")
    parser.add_argument("--checkpointing", default=None, help="JSON of config 'checkpointing'")
    parser.add_argument("--run-file", required=True)
    parser.add_argument("--image-min-pixels", type=int, required=True, help="Stage I's limits")
    parser.add_argument("--image-max-pixels", type=int, required=True)
    parser.add_argument(
        "--image-resample",
        choices=("bicubic", "nearest"),
        default="bicubic",
        help="the filter images are scaled with (config images.resample)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the model folder run its own code (off unless the config opts in)",
    )
    args = parser.parse_args()
    hparams = {k: v for k, v in json.loads(args.hparams).items() if v is not None}
    perturbation = json.loads(args.perturbation)
    run = {
        "model_name_or_path": args.model,
        "dataset": args.data,
        **({"refine_prompt": args.refine_prompt} if args.refine_prompt else {}),
        "perturbation": perturbation,
        "recipe": perturbation["recipe"],
        **({"output_dir": args.output_dir} if args.output_dir else {}),
        "seed": args.seed,
        "trust_remote_code": args.trust_remote_code,
        "image_min_pixels": args.image_min_pixels,
        "image_max_pixels": args.image_max_pixels,
        # named only when not the default, as the other runs' files are
        **({"image_resample": args.image_resample} if args.image_resample != "bicubic" else {}),
        **(checkpoint_keys(json.loads(args.checkpointing)) if args.checkpointing else {}),
        "report_to": "none",
        **hparams,
    }
    atomic.write_yaml(args.run_file, run)


if __name__ == "__main__":
    main()
