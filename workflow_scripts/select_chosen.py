"""Stage III chosen: keep the candidates whose turns 1-3 agree (self-consistency judge).

The llm judge saves its replies every --judge-chunk-size prompts in ``<output>.progress/``, as
generating jobs do (sherlock.generation.resumable): a killed job, rerun, reads them back and
asks the model only the rest, reaching the same verdicts.
"""

import argparse
import sys
from functools import partial
from typing import Any

import yaml

from sherlock.data.prompts import load_prompt
from sherlock.data.sharegpt import read_json, write_json
from sherlock.generation import SamplingParams, load_text_backend
from sherlock.generation.job import add_vllm_arguments, finish_progress, progress_folder
from sherlock.generation.resumable import ResumableBackend
from sherlock.online.judge import exact_equivalent, llm_equivalent
from sherlock.online.self_consistency import select_chosen, shortfall_warning
from sherlock.runtime import atomic
from sherlock.runtime.fingerprints import folder_signature
from sherlock.runtime.step_summary import stage_summary


def judge_backend(args: argparse.Namespace) -> Any:
    """The llm judge's text backend, loaded only when a prompt is not answered in the saved
    progress; with --judge-chunk-size its replies are saved chunk by chunk."""
    options: dict[str, Any] = {"batch_size": args.judge_batch_size, "dtype": args.dtype}
    if args.backend == "vllm":
        options.update(
            seed=args.seed,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len,
        )

    def load() -> Any:
        return load_text_backend(
            args.backend, args.judge_model, trust_remote_code=args.trust_remote_code, **options
        )

    if args.judge_chunk_size is None:
        return load()
    # What the replies depend on besides the prompts (each chunk's fingerprint holds those).
    own = {"candidates", "target", "min_pairs", "output", "summary", "gpu_memory_utilization"}
    settings = sorted((key, value) for key, value in vars(args).items() if key not in own)
    return ResumableBackend(
        load,
        progress_folder(args.output),
        chunk_size=args.judge_chunk_size,
        batch_size=args.judge_batch_size,
        identity={"arguments": settings, "model": folder_signature(args.judge_model)},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", required=True)
    parser.add_argument("--judge", choices=["exact", "llm"], required=True)
    parser.add_argument("--judge-model", default=None, help="llm: a text model folder or hub id")
    parser.add_argument(
        "--backend",
        choices=["transformers", "vllm"],
        default="transformers",
        help="llm: the generation backend that runs the judge (config: generation.backend)",
    )
    add_vllm_arguments(parser)
    parser.add_argument("--judge-batch-size", type=int, default=8)
    parser.add_argument(
        "--judge-chunk-size",
        type=int,
        default=None,
        help="llm: save the replies every this many prompts (a multiple of --judge-batch-size); "
        "a rerun after a kill resumes from them",
    )
    parser.add_argument("--judge-max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the model folder run its own code (off unless the config opts in)",
    )
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--target", type=int, required=True, help="keep at most this many")
    parser.add_argument("--min-pairs", type=int, required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--summary", required=True)
    args = parser.parse_args()

    candidates = read_json(args.candidates)
    replies: list[str] = []
    if args.judge == "exact":
        judge = exact_equivalent
    else:
        if not args.judge_model:
            sys.exit("online.judge.model: the llm judge needs a text model")
        backend = judge_backend(args)
        greedy = SamplingParams(0.0, 1.0, args.judge_max_new_tokens, args.seed)
        template = load_prompt("consistency_judge")

        def judge(items):
            verdicts, raw = llm_equivalent(
                items, template, partial(backend.generate_text, sampling=greedy)
            )
            replies.extend(raw)
            return verdicts

    kept, summary = select_chosen(candidates, judge, args.target)
    llm = {"judge_model": args.judge_model, "judge_backend": args.backend}
    summary = {
        "judge": args.judge,
        **(llm if args.judge == "llm" else {}),
        "target": args.target,
        **summary,
    }
    warning = shortfall_warning(len(kept), args.target, len(candidates))
    if warning:
        summary["warning"] = warning
        print(f"WARNING: {warning}", file=sys.stderr)
    if replies:
        summary["judge_replies_sample"] = replies[:5]
    print(f"chosen: {yaml.safe_dump(summary, sort_keys=False)}")
    stage_summary(
        f"chosen {args.candidates}",
        f"{summary['kept']}/{summary['candidates']} kept "
        f"(acceptance {summary['acceptance_rate']:.1%}, {args.judge} judge)"
        + (f"; WARNING: {warning}" if warning else ""),
    )
    if len(kept) < args.min_pairs:
        sys.exit(
            f"{args.candidates}: the {args.judge} judge kept {len(kept)} pairs from "
            f"{len(candidates)} candidates, fewer than online.min_pairs = {args.min_pairs}. "
            f"Not kept: {summary['not_kept']}. Raise splits.pool, lower online.min_pairs, "
            "or change generation.candidates (sampling) or online.judge."
        )
    write_json(args.output, kept)
    atomic.write_yaml(args.summary, summary)
    if args.judge == "llm":
        finish_progress(backend)


if __name__ == "__main__":
    main()
