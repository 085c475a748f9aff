"""Stage I's data with its images scaled by the workflow, for a filter LLaMA-Factory does not offer
(config images.resample other than bicubic): sherlock.sft.fitted_images."""

import argparse
import os

from sherlock.data.sharegpt import read_json, write_json
from sherlock.runtime.step_summary import stage_summary
from sherlock.sft.fitted_images import fit_row_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="the ShareGPT JSON Stage I trains on")
    parser.add_argument("--image-min-pixels", type=int, required=True)
    parser.add_argument("--image-max-pixels", type=int, required=True)
    parser.add_argument("--image-resample", choices=("bicubic", "nearest"), required=True)
    parser.add_argument("--output", required=True, help="the data pointing at the scaled copies")
    parser.add_argument("--images", required=True, help="folder of the scaled copies")
    args = parser.parse_args()
    rows, counts = fit_row_images(
        read_json(args.data),
        args.image_min_pixels,
        args.image_max_pixels,
        args.image_resample,
        args.images,
        os.getcwd(),  # LLaMA-Factory's media_dir: relative image paths are read from here
    )
    write_json(args.output, rows)
    stage_summary(
        "stage I images",
        f"{args.data}: {counts['images']} images, {counts['scaled_copies']} scaled "
        f"({args.image_resample}) -> {args.images}",
    )


if __name__ == "__main__":
    main()
