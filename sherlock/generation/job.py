"""The generation options every generating workflow script takes, and what they build."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sherlock.generation.backends import load_backend
from sherlock.generation.base import GenerationBackend, SamplingParams
from sherlock.generation.resumable import ResumableBackend
from sherlock.runtime.fingerprints import folder_signature
from sherlock.runtime.step_summary import stage_summary


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
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the model folder run its own code (config: base_model.trust_remote_code)",
    )
    parser.add_argument(
        "--no-conclusion-stop",
        action="store_true",
        help="keep each answer raw, to the model's end of turn or --max-new-tokens, instead of "
        "stopping it after its first </CONCLUSION>",
    )
    parser.add_argument(
        "--native-images",
        action="store_true",
        help="answer on each image as stored, the model's processor resizing it as it does "
        "(--image-*-pixels then only size what training will see)",
    )
    parser.add_argument(
        "--image-resample",
        choices=("bicubic", "nearest"),
        default="bicubic",
        help="the filter images are scaled with (config images.resample)",
    )
    parser.add_argument(
        "--image-min-pixels",
        type=int,
        default=None,
        help="scale smaller images up to this many pixels, as LLaMA-Factory trains",
    )
    parser.add_argument(
        "--image-max-pixels",
        type=int,
        default=None,
        help="scale larger images down to this many pixels, as LLaMA-Factory trains",
    )
    add_vllm_arguments(parser)
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="save progress every this many requests (a multiple of --batch-size); "
        "a rerun after a kill resumes from the saved chunks",
    )
    parser.add_argument("--shard", type=int, default=None, help="generate only shard I of --shards")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--shard-dir", default=None, help="where shard I keeps its chunks")
    parser.add_argument(
        "--saved-chunks",
        nargs="*",
        default=[],
        help="shard folders holding every chunk: gather them instead of generating",
    )


def add_vllm_arguments(parser: argparse.ArgumentParser) -> None:
    """The vllm backend's engine settings (config: generation.vllm)."""
    parser.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=0.9,
        help="vllm: the share of the GPU's memory the engine may take",
    )
    parser.add_argument(
        "--max-model-len",
        type=int,
        default=None,
        help="vllm: longest prompt + answer in tokens (default: the model's)",
    )


def backend_from_args(
    args: argparse.Namespace, progress_for: str | None = None
) -> GenerationBackend:
    """The backend; with ``progress_for`` (the job's main output) and ``--chunk-size``, wrapped
    so that progress is kept in ``<progress_for>.progress`` (see ``ResumableBackend``)."""

    def load() -> GenerationBackend:
        return load_backend(args.backend, args.model, **backend_options(args))

    sharded = args.shard is not None or args.saved_chunks
    if progress_for is None or args.chunk_size is None:
        if sharded:
            raise ValueError("sharded generation needs --chunk-size and a progress folder")
        return load()
    if args.shard is not None and not args.shard_dir:
        raise ValueError("--shard needs --shard-dir, the folder the shard's chunks go to")
    # What the chunks depend on; not where this job writes or which shard it is.
    own = {"shard", "shards", "shard_dir", "saved_chunks", "output", "responses", "summary"}
    own.add("gpu_memory_utilization")  # the engine's memory share, not the answers
    settings = sorted((key, value) for key, value in vars(args).items() if key not in own)
    return ResumableBackend(
        load,
        args.shard_dir if args.shard is not None else progress_folder(progress_for),
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        identity={"arguments": settings, "model": folder_signature(args.model)},
        shard=(args.shard, args.shards) if args.shard is not None else None,
        saved_dirs=args.saved_chunks,
        require_saved=bool(args.saved_chunks),
    )


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords ``load_backend`` passes to the chosen backend."""
    options: dict[str, Any] = {
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "trust_remote_code": args.trust_remote_code,
        # The training limits, unless the model answers on the images as stored.
        "image_min_pixels": None if args.native_images else args.image_min_pixels,
        "image_max_pixels": None if args.native_images else args.image_max_pixels,
        "image_resample": args.image_resample,
    }
    if args.backend == "vllm":
        options.update(
            seed=args.seed,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len,
        )
    return options


def shard_only(args: argparse.Namespace, backend: GenerationBackend) -> bool:
    """True in a shard job: its chunks are saved, and the job that gathers them writes the
    outputs (the caller stops here)."""
    if args.shard is None:
        return False
    if isinstance(backend, ResumableBackend):
        print(f"shard {args.shard} of {args.shards}: {backend.report()}", flush=True)
    return True


def progress_folder(output: str) -> Path:
    """Where a generating job whose main output is ``output`` keeps its chunks."""
    return Path(f"{output}.progress")


def finish_progress(backend: GenerationBackend) -> None:
    """Delete the saved chunks of a job whose outputs are now written."""
    if isinstance(backend, ResumableBackend):
        backend.finish()


def finish_job(
    args: argparse.Namespace,
    backend: GenerationBackend,
    write_outputs: Callable[[], tuple[str, str]],
) -> None:
    """The end every generating job shares, once its answers are generated: a shard job stops
    (its chunks are saved; the gathering job writes); else ``write_outputs`` writes the outputs
    and returns the step's summary (step, text), the saved chunks are deleted, and the summary
    line is printed (sherlock.runtime.step_summary)."""
    if shard_only(args, backend):
        return
    step, text = write_outputs()
    finish_progress(backend)
    stage_summary(step, text)


def sampling_from_args(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        stop_at_conclusion=not args.no_conclusion_stop,
    )
