"""Fetch a preset's inputs from their published places (config ``downloads``).

    python workflow_scripts/download.py model --repo meta-llama/Llama-3.2-11B-Vision-Instruct \
        --output data/models/meta-llama/Llama-3.2-11B-Vision-Instruct
    python workflow_scripts/download.py llava-cot --jsonl data/LLaVA-CoT-100k/train.jsonl \
        --image-root data/LLaVA-CoT-100k
"""

import argparse

from sherlock.downloads import LLAVA_COT_HUB, fetch_llava_cot, fetch_model
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    kinds = parser.add_subparsers(dest="kind", required=True)
    model = kinds.add_parser("model", help="a Hugging Face hub model into a folder")
    model.add_argument("--repo", required=True, help="hub id, org/name")
    model.add_argument("--output", required=True, help="the model folder to write")
    source = kinds.add_parser("llava-cot", help="LLaVA-CoT-100k: records and images")
    source.add_argument("--repo", default=LLAVA_COT_HUB, help="hub dataset id")
    source.add_argument("--jsonl", required=True, help="where the records go (source.path)")
    source.add_argument("--image-root", required=True, help="where the images go")
    args = parser.parse_args()
    if args.kind == "model":
        folder = fetch_model(args.repo, args.output)
        stage_summary("download", f"{args.repo} -> {folder}")
    else:
        jsonl = fetch_llava_cot(args.jsonl, args.image_root, args.repo)
        stage_summary("download", f"{args.repo} -> {jsonl} (images under {args.image_root})")


if __name__ == "__main__":
    main()
