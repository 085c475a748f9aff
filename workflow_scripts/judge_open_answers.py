"""Open answers (MathVista, MMVet) re-scored: a local judge model extracts each turn's answer,
rules compare it with the reference (sherlock.evaluation.open_answers); not VLMEvalKit's GPT."""

import argparse
import json
import sys
from functools import partial

from sherlock.data.prompts import load_prompt
from sherlock.data.sharegpt import read_json, write_json
from sherlock.evaluation.evaluate import summarise
from sherlock.evaluation.metrics import add_scores
from sherlock.evaluation.open_answers import judge_rows
from sherlock.generation import SamplingParams, load_text_backend
from sherlock.generation.job import add_vllm_arguments
from sherlock.runtime import atomic
from sherlock.runtime.step_summary import stage_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--responses", required=True, help="the evaluate job's responses")
    parser.add_argument("--scores", required=True, help="the evaluate job's summary")
    parser.add_argument("--judge-model", required=True, help="a text model folder or hub id")
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    add_vllm_arguments(parser)
    parser.add_argument("--judge-batch-size", type=int, default=8)
    parser.add_argument("--judge-max-new-tokens", type=int, default=32)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--output", required=True, help="responses with the judged answers")
    parser.add_argument("--summary", required=True, help="scores per turn (JSON)")
    args = parser.parse_args()

    rows = read_json(args.responses)
    with open(args.scores, encoding="utf-8") as handle:
        before = json.load(handle)
    options = {"batch_size": args.judge_batch_size, "dtype": args.dtype}
    if args.backend == "vllm":
        options.update(
            seed=args.seed,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len,
        )
    try:
        backend = load_text_backend(
            args.backend, args.judge_model, trust_remote_code=args.trust_remote_code, **options
        )
    except (OSError, ValueError) as error:
        sys.exit(f"error: evaluation.judge.model {args.judge_model}: {error}")
    greedy = SamplingParams(0.0, 1.0, args.judge_max_new_tokens, args.seed)
    answer_from = before.get("answer_from", "conclusion")
    judged = judge_rows(
        rows,
        load_prompt("answer_extraction"),
        partial(backend.generate_text, sampling=greedy),
        answer_from,
    )
    summary = summarise(judged, before["rounds"], answer_from)
    add_scores(summary, judged, before["metric"])
    keep = ("checkpoint", "benchmark", "model", "benchmark_file", "items_in_file")
    summary = {
        **{key: before[key] for key in keep},
        "malformed_rows": before.get("malformed_rows", 0),
        "vlmevalkit_differences": before.get("vlmevalkit_differences", {}),
        "judge_model": args.judge_model,
        "judge": "answers extracted by a local model, not VLMEvalKit's GPT judge",
        **summary,
    }
    write_json(args.output, judged)
    atomic.write_json(args.summary, summary)
    scores = " -> ".join(f"{turn['score']:.1f}" for turn in summary["turns"])
    stage_summary(
        f"judge {before['checkpoint']} on {before['benchmark']}",
        f"{len(judged)} items judged by {args.judge_model}: {scores} (direct -> last turn)",
    )


if __name__ == "__main__":
    main()
