"""Build the tiny random-initialised VLM (and its tokenizer) as a Hugging Face folder."""

import argparse
from pathlib import Path

from sherlock.embedded.tiny_model import ARCHITECTURES, build_tiny_vlm, corpus_from_jsonl
from sherlock.runtime.atomic import atomic_directory
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", required=True, nargs="+", help="LLaVA-CoT JSONL files")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--architecture", choices=ARCHITECTURES, required=True)
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--hidden-size", type=int, required=True)
    parser.add_argument("--num-layers", type=int, required=True)
    parser.add_argument("--num-heads", type=int, required=True)
    parser.add_argument("--vision-depth", type=int, required=True)
    parser.add_argument("--vision-embed-dim", type=int, required=True)
    parser.add_argument("--image-feature-scale", type=float, default=1.0)
    args = parser.parse_args()
    with atomic_directory(args.out_dir) as scratch:
        info = build_tiny_vlm(
            scratch,
            corpus_from_jsonl([Path(p) for p in args.corpus]),
            seed=args.seed,
            image_size=args.image_size,
            architecture=args.architecture,
            vocab_size=args.vocab_size,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            num_heads=args.num_heads,
            vision_depth=args.vision_depth,
            vision_embed_dim=args.vision_embed_dim,
            image_feature_scale=args.image_feature_scale,
        )
    stage_summary("tiny model", f"{info} in {args.out_dir}")


if __name__ == "__main__":
    main()
