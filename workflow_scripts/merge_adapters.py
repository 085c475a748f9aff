"""Write a LoRA stage's merged model: its adapter chain merged into the chain's root model."""

import argparse

from sherlock.runtime.step_summary import stage_summary
from sherlock.sft.merge import merge_adapters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the root: base model or a full stage's")
    parser.add_argument("--adapters", nargs="+", required=True, help="adapter folders, in order")
    parser.add_argument("--template", required=True, help="LLaMA-Factory chat template")
    parser.add_argument("--output", required=True, help="the merged model's folder")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the model folder run its own code (off unless the config opts in)",
    )
    args = parser.parse_args()
    summary = merge_adapters(
        args.model, args.adapters, args.output, args.template, args.trust_remote_code
    )
    stage_summary(
        f"merge {args.output.rstrip('/').rsplit('/', 1)[-1]}",
        f"{len(args.adapters)} adapter(s) merged into {args.model} ({summary['dtype']})"
        f" -> {args.output}",
    )


if __name__ == "__main__":
    main()
