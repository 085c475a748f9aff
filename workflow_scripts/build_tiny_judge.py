"""Train the tiny self-consistency judge (a text chat model); write it as a Hugging Face folder."""

import argparse
import json
from pathlib import Path

import torch

from sherlock.embedded.tiny_judge import build_tiny_judge
from sherlock.runtime.atomic import atomic_directory
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", required=True, help="LLaVA-CoT JSONL (question, answer)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--hidden-size", type=int, required=True)
    parser.add_argument("--num-layers", type=int, required=True)
    args = parser.parse_args()
    # One thread: the model is tiny, and a second thread only contends on a shared CPU.
    torch.set_num_threads(1)
    lines = Path(args.records).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    with atomic_directory(args.out_dir) as scratch:
        info = build_tiny_judge(
            scratch,
            records,
            seed=args.seed,
            steps=args.steps,
            vocab_size=args.vocab_size,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
        )
    stage_summary("tiny judge", f"{info} in {args.out_dir}")


if __name__ == "__main__":
    main()
