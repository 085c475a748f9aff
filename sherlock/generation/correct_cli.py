"""``sherlock-correct``: ask a checkpoint about an image, then let it correct itself.

Prints the direct answer and the answer of every self-correction round (the REFINE prompt applied
to the model's previous answer), as text or, with ``--json``, as one JSON object. Works for the
workflow's checkpoints and for any image-text-to-text checkpoint on disk with a chat template
(e.g. released Sherlock weights based on Llama-3.2-Vision).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from sherlock.data.prompts import load_prompt
from sherlock.data.response import extract_answer
from sherlock.generation import SamplingParams, load_backend
from sherlock.generation.self_correct import Question, self_correct


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sherlock-correct", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder (or hub id)")
    parser.add_argument("--image", required=True, help="image file")
    parser.add_argument("--question", required=True)
    parser.add_argument("--rounds", type=int, default=3, help="self-correction rounds (default 3)")
    parser.add_argument(
        "--backend",
        choices=["transformers", "vllm"],
        default="transformers",
        help="vllm: in the vLLM environment, on a GPU, for the models vLLM serves",
    )
    parser.add_argument(
        "--device", default="auto", help="transformers: auto = the first GPU, else the CPU"
    )
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on a GPU, else float32")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--refine-prompt",
        default=None,
        help="refine prompt: a shipped wording (clean, trailing_spaces) or a custom file; "
        "default clean",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the model folder run its own code (off by default)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.rounds < 0:
        sys.exit("error: --rounds must be >= 0")
    options = {"batch_size": 1, "dtype": args.dtype, "progress": False}
    if args.backend == "vllm":
        options["seed"] = args.seed
    else:
        options["device"] = args.device
    backend = load_backend(
        args.backend, args.model, trust_remote_code=args.trust_remote_code, **options
    )
    sampling = SamplingParams(args.temperature, args.top_p, args.max_new_tokens, args.seed)
    question = Question("question", args.image, args.question)
    (turns,) = self_correct(
        backend, [question], load_prompt("refine", args.refine_prompt), sampling, args.rounds
    )
    answers = [extract_answer(turn) for turn in turns]
    if args.json:
        print(json.dumps({"question": args.question, "turns": turns, "answers": answers}))
        return
    for index, (turn, answer) in enumerate(zip(turns, answers, strict=True)):
        title = "direct answer" if index == 0 else f"self-correction round {index}"
        print(f"=== {title} ===\n{turn}\n--- answer: {answer if answer is not None else '(none)'}")


if __name__ == "__main__":
    main()
