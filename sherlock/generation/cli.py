"""The generation options every generating workflow script takes, and what they build."""

from __future__ import annotations

import argparse

from sherlock.generation.base import GenerationBackend, SamplingParams, load_backend


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, the backend's settings and the sampling settings (rules/common.smk fills them)."""
    parser.add_argument("--model", required=True, help="checkpoint folder that generates")
    parser.add_argument("--backend", default="transformers")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--max-new-tokens", type=int, required=True)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--temperature", type=float, required=True)
    parser.add_argument("--top-p", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)


def backend_from_args(args: argparse.Namespace) -> GenerationBackend:
    return load_backend(args.backend, args.model, batch_size=args.batch_size, dtype=args.dtype)


def sampling_from_args(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
