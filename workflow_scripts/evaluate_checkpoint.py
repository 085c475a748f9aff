"""Score one checkpoint on one benchmark: the direct answer and each self-correction turn."""

import argparse
import json
import sys

from sherlock.data.prompts import load_prompt
from sherlock.data.sharegpt import write_json
from sherlock.evaluation.answers import ANSWER_FROM
from sherlock.evaluation.benchmark_files import BenchmarkError, read_benchmark
from sherlock.evaluation.differences import vlmevalkit_differences
from sherlock.evaluation.evaluate import evaluate
from sherlock.evaluation.metrics import METRICS, add_scores
from sherlock.generation.job import (
    add_generation_arguments,
    backend_from_args,
    finish_job,
    sampling_from_args,
)
from sherlock.runtime import atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_generation_arguments(parser)
    parser.add_argument("--checkpoint-name", required=True, help="base, r0, sft, offline, iterK")
    parser.add_argument("--benchmark", required=True, help="benchmark JSONL (documented form)")
    parser.add_argument("--benchmark-name", required=True)
    parser.add_argument("--metric", choices=METRICS, default="accuracy")
    parser.add_argument(
        "--answer-from",
        choices=ANSWER_FROM,
        default="auto",
        help="the answer's text: the CONCLUSION, the whole response, or auto (the CONCLUSION, "
        "else the whole response; docs/evaluation.md)",
    )
    parser.add_argument(
        "--conversion", default=None, help="a VLMEvalKit file's conversion summary (malformed rows)"
    )
    parser.add_argument("--image-root", default=None, help="default: the benchmark's folder")
    parser.add_argument("--rounds", type=int, required=True, help="self-correction turns")
    parser.add_argument("--max-items", type=int, default=None, help="the first N items only")
    parser.add_argument(
        "--refine-prompt",
        default=None,
        help="refine prompt: a shipped wording (clean, trailing_spaces) or a custom file; "
        "default clean",
    )
    parser.add_argument("--responses", required=True, help="every item's turns and scores")
    parser.add_argument("--summary", required=True, help="accuracy per turn (JSON)")
    args = parser.parse_args()

    try:
        items = read_benchmark(args.benchmark, args.image_root)
    except BenchmarkError as error:
        sys.exit(f"error: {error}")
    offered = len(items)
    if args.max_items is not None:
        items = items[: args.max_items]
    backend = backend_from_args(args, progress_for=args.responses)
    rows, summary = evaluate(
        backend,
        items,
        load_prompt("refine", args.refine_prompt),
        sampling_from_args(args),
        args.rounds,
        args.answer_from,
        open_as_choice=args.metric == "mmmu",
    )

    def write_outputs() -> tuple[str, str]:
        return write_evaluation(args, rows, summary, offered, len(items))

    finish_job(args, backend, write_outputs)


def write_evaluation(args, rows: list, summary: dict, offered: int, evaluated: int):
    """Write the responses and the scores; the step's summary line."""
    malformed = 0
    if args.conversion:
        with open(args.conversion, encoding="utf-8") as handle:
            malformed = json.load(handle)["malformed_rows"]
    add_scores(summary, rows, args.metric)
    differences = vlmevalkit_differences(rows, args.metric)
    summary = {
        "checkpoint": args.checkpoint_name,
        "benchmark": args.benchmark_name,
        "model": args.model,
        "benchmark_file": args.benchmark,
        "items_in_file": offered,
        "malformed_rows": malformed,
        "vlmevalkit_differences": differences,
        **summary,
    }
    write_json(args.responses, rows)
    atomic.write_json(args.summary, summary)
    scores = " -> ".join(f"{turn['score']:.1f}" for turn in summary["turns"])
    direct = summary["turns"][0]
    return (
        f"evaluate {args.checkpoint_name} on {args.benchmark_name}",
        f"{evaluated}/{offered} items, {args.metric} direct -> turn {args.rounds}: {scores}; "
        f"answers read from: {args.answer_from}; without the four-stage format (direct): "
        f"{100 * direct['no_format']:.0f}%"
        + (f"; no CONCLUSION: {direct['no_conclusion']}" if direct["no_conclusion"] else "")
        + (f"; {malformed} malformed rows of the file not evaluated" if malformed else "")
        + (
            "; rows VLMEvalKit reads differently: "
            + ", ".join(f"{name} {count}" for name, count in differences.items())
            if differences
            else ""
        ),
    )


if __name__ == "__main__":
    main()
