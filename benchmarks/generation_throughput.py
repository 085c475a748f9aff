"""Generation throughput: batched against one prompt per call, and N shards against one process.

    .venv/bin/python benchmarks/generation_throughput.py --prompts 64 --rounds 3
    .venv/bin/python benchmarks/generation_throughput.py --workdir /tmp/tiny   # reuse a build
    .venv/bin/python benchmarks/generation_throughput.py --model M --dtype bfloat16   # a GPU

Same backend, model, prompts and greedy sampling everywhere; every round runs every mode, in
alternating order, so machine noise hits them alike.

* batched: ONE ``generate()`` call with all prompts, the backend loaded with ``--batch-size``;
* one prompt per call (the reference scripts' pattern): ``generate()`` once per prompt, on the
  same backend class loaded with batch size 1. vLLM: on the same engine, which batches whatever
  is in flight (its batch size only names seed groups) and leaves no memory for a second one;
* shards: ``--shards`` N processes started together, each generating only its own chunks
  (``ResumableBackend(shard=(i, N))``) into its own folder, against one process generating all
  chunks; wall clock of the whole processes (start, imports, model load, generation). On a CPU
  the single process gets ``--threads`` torch threads (default: every core) and each shard
  ``--threads // N``; with at least N GPUs each shard gets its own GPU. The shard folders are
  then gathered as the workflow gathers them (``saved_dirs``, ``require_saved``) and compared
  with the single process's. vLLM on one GPU: run ``--what batching`` and ``--what shards``
  separately (and ``--gpu-memory-utilization`` below 1/N for the shards), as every engine
  takes its share of the GPU's memory when it starts.

The in-process models are loaded once, before any timing, and warmed up on one prompt.
Prompts are questions with their images (the synthetic source by default, ``--questions`` for
another LLaVA-CoT JSONL or a sharegpt split such as ``results/data/D_B.json``), asked as the
workflow asks them (``build_sherlock_sft.py``). Without ``--workdir`` the tiny Qwen2-VL and the
synthetic data are built in a temporary folder by the workflow's own scripts with the default
config; with it they are reused from ``<workdir>/results`` when there (``models/base``,
``synthetic/``), e.g. after ``snakemake sft --directory DIR``, and built there otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from sherlock.data.images import LLAMAFACTORY_MAX_PIXELS, LLAMAFACTORY_MIN_PIXELS
from sherlock.generation import (
    GenerationBackend,
    GenerationRequest,
    SamplingParams,
    load_backend,
)
from sherlock.generation.resumable import ResumableBackend

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow_scripts"
CONFIG = ROOT / "config" / "config.yaml"
# What rules/base.smk passes to build_tiny_model.py.
TINY_MODEL_KEYS = (
    "vocab_size", "hidden_size", "num_layers", "num_heads", "vision_depth", "vision_embed_dim",
)  # fmt: skip
SETTINGS = (
    "backend", "dtype", "prompts", "rounds", "batch_size", "chunk_size", "max_new_tokens",
    "shards", "threads",
)  # fmt: skip


# --- data and model -------------------------------------------------------------------------


def build_questions(results: Path, config: dict[str, Any]) -> Path:
    """The synthetic source under ``results`` (the workflow's script and default settings)."""
    synthetic = results / "synthetic"
    if not (synthetic / "train.jsonl").is_file():
        command = [sys.executable, str(SCRIPTS / "build_synthetic.py"), "--out-dir", str(synthetic)]
        command += ["--n-train", str(config["synthetic"]["n_train"])]
        command += ["--n-test", str(config["synthetic"]["n_test"])]
        command += ["--image-size", str(config["synthetic"]["image_size"])]
        subprocess.run([*command, "--seed", str(config["seed"])], check=True, capture_output=True)
    return synthetic / "train.jsonl"


def build_tiny_model(results: Path, config: dict[str, Any], corpus: Path) -> Path:
    """The tiny Qwen2-VL under ``results`` (the workflow's script and default settings)."""
    model = results / "models" / "base"
    if not (model / "config.json").is_file():
        command = [sys.executable, str(SCRIPTS / "build_tiny_model.py")]
        command += ["--corpus", str(corpus), "--out-dir", str(model), "--seed", str(config["seed"])]
        command += ["--image-size", str(config["synthetic"]["image_size"])]
        for key in TINY_MODEL_KEYS:
            command += [f"--{key.replace('_', '-')}", str(config["tiny_model"][key])]
        subprocess.run(command, check=True, capture_output=True)
    return model


def load_requests(path: Path, count: int) -> list[GenerationRequest]:
    """The first ``count`` questions of a LLaVA-CoT JSONL file (the synthetic source) or a
    sharegpt JSON split (``results/data/D_B.json``), as the workflow turns records into
    requests: the question without its ``<image>`` placeholder, nothing pre-filled."""
    if path.suffix == ".jsonl":
        from sherlock.data.records import load_records

        records = load_records(path, "llava_cot", path.parent).records
    else:
        from sherlock.data.sharegpt import read_json, sft_row_to_record

        records = [sft_row_to_record(row, origin=str(path)) for row in read_json(path)]
    if len(records) < count:
        raise SystemExit(f"{path} has {len(records)} valid questions; --prompts asks for {count}")
    return [
        GenerationRequest(key=r.id, image=r.image, user_text=r.question) for r in records[:count]
    ]


def backend_options(args: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    """``load_backend`` keywords: the workflow's (images at LLaMA-Factory's resolution), no
    progress bars."""
    options: dict[str, Any] = {
        "batch_size": batch_size,
        "dtype": args.dtype,
        "trust_remote_code": args.trust_remote_code,
        "image_min_pixels": LLAMAFACTORY_MIN_PIXELS,
        "image_max_pixels": LLAMAFACTORY_MAX_PIXELS,
        "progress": False,
    }
    if args.backend == "vllm":
        options.update(
            seed=args.seed,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len,
        )
    elif args.backend == "transformers":
        options["device"] = args.device
    return options


def sampling_of(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        temperature=0.0, top_p=1.0, max_new_tokens=args.max_new_tokens, seed=args.seed
    )


# --- the shard processes --------------------------------------------------------------------


def shard_worker(spec_path: Path) -> None:
    """One generating process (``--_shard-worker``): its chunks go to its own folder."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    if spec["threads"]:
        import torch

        torch.set_num_threads(spec["threads"])
    requests = [GenerationRequest(**request) for request in spec["requests"]]
    start = time.perf_counter()
    inner = load_backend(spec["backend"], spec["model"], **spec["options"])
    loaded = time.perf_counter()
    backend = ResumableBackend(
        inner,
        spec["progress_dir"],
        chunk_size=spec["chunk_size"],
        batch_size=spec["options"]["batch_size"],
        identity=spec["identity"],
        shard=tuple(spec["shard"]) if spec["shard"] else None,
    )
    backend.generate(requests, SamplingParams(**spec["sampling"]))
    done = time.perf_counter()
    result = {"load_s": loaded - start, "generate_s": done - loaded}
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")


def gather(
    requests: Sequence[GenerationRequest],
    sampling: SamplingParams,
    folders: Sequence[Path],
    scratch: Path,
    chunk_size: int,
    batch_size: int,
) -> list[str]:
    """Every chunk read back from ``folders`` the way the gathering job does; never loads a
    model (a missing chunk is an error)."""

    def no_model() -> GenerationBackend:
        raise RuntimeError("gathering must not generate")

    backend = ResumableBackend(
        no_model,
        scratch,
        chunk_size=chunk_size,
        batch_size=batch_size,
        identity="gather",
        saved_dirs=folders,
        require_saved=True,
    )
    return backend.generate(requests, sampling)


class ShardRunner:
    """Starts the single process or the N shard processes of one round and times them."""

    def __init__(
        self,
        args: argparse.Namespace,
        model: str,
        requests: Sequence[GenerationRequest],
        scratch: Path,
    ) -> None:
        self.args = args
        self.model = model
        self.requests = requests
        self.scratch = scratch
        self.gpus = visible_gpus()
        self.on_cpu = not self.gpus or args.device == "cpu"

    def threads(self, processes: int) -> int | None:
        """Torch threads per process on a CPU: ``--threads`` split evenly (None on a GPU)."""
        return max(1, self.args.threads // processes) if self.on_cpu else None

    def placement(self, processes: int) -> str:
        if self.on_cpu:
            threads = self.threads(processes)
            each = " each" if processes > 1 else ""
            return f"CPU, {threads} torch thread{'s' if threads != 1 else ''}{each}"
        if len(self.gpus) >= processes:
            return "one GPU each"
        return f"sharing {len(self.gpus)} GPU(s)"

    def run(self, name: str, processes: int) -> tuple[float, list[Path], list[dict]]:
        """Wall time from starting the first process to the end of the last one."""
        args = self.args
        threads = self.threads(processes)
        runs = []
        for index in range(processes):
            folder = self.scratch / f"{name}-{index}"
            spec = {
                "backend": args.backend,
                "model": self.model,
                "options": backend_options(args, args.batch_size),
                "sampling": dataclasses.asdict(sampling_of(args)),
                "requests": [dataclasses.asdict(request) for request in self.requests],
                "chunk_size": args.chunk_size,
                "shard": [index, processes] if processes > 1 else None,
                "identity": {
                    "model": self.model,
                    "options": backend_options(args, args.batch_size),
                },
                "progress_dir": str(folder),
                "threads": threads,
                "result": str(folder) + ".result.json",
            }
            spec_path = self.scratch / f"{name}-{index}.spec.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
            if threads:
                env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
            elif len(self.gpus) >= processes:
                env["CUDA_VISIBLE_DEVICES"] = self.gpus[index]
            command = [sys.executable, __file__, "--_shard-worker", str(spec_path)]
            runs.append((folder, spec["result"], command, env))
        # Output to files, not pipes: a pipe nobody reads while waiting can block its writer.
        logs = [(self.scratch / f"{name}-{index}.log").open("w") for index in range(processes)]
        start = time.perf_counter()
        procs = [
            subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            for (_, _, command, env), log in zip(runs, logs, strict=True)
        ]
        codes = [proc.wait() for proc in procs]
        elapsed = time.perf_counter() - start
        for log in logs:
            log.close()
        for code, log in zip(codes, logs, strict=True):
            if code:
                tail = Path(log.name).read_text(encoding="utf-8", errors="replace")[-3000:]
                raise SystemExit(f"{name}: a generating process failed ({code}):\n{tail}")
        reports = [json.loads(Path(result).read_text(encoding="utf-8")) for _, result, _, _ in runs]
        return elapsed, [folder for folder, _, _, _ in runs], reports


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` names them."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = listed.split(",") if listed else [str(i) for i in range(count)]
    return names[:count]


# --- measuring ------------------------------------------------------------------------------


def timed(call: Callable[[], list[str]], counter: TokenCounter) -> tuple[float, list[str], Any]:
    since = counter.total
    start = time.perf_counter()
    texts = call()
    seconds = time.perf_counter() - start
    return seconds, texts, counter.tokens(texts, since)


class TokenCounter:
    """Generated tokens of one backend. transformers: exact, by wrapping its model's
    ``generate`` (the new tokens that are not padding: a row that finished early is padded to
    its batch's longest); other backends: the returned texts re-tokenised (approximate)."""

    def __init__(self, backend: GenerationBackend) -> None:
        self.backend = backend
        self.total = 0
        model = getattr(backend, "model", None)
        pad = getattr(getattr(backend, "tokenizer", None), "pad_token_id", None)
        self.exact = pad is not None and callable(getattr(model, "generate", None))
        if self.exact:
            original = model.generate

            def generate(*args: Any, **kwargs: Any) -> Any:
                generated = original(*args, **kwargs)
                new = generated[:, kwargs["input_ids"].shape[1] :]
                self.total += int((new != pad).sum())
                return generated

            model.generate = generate

    def tokens(self, texts: Sequence[str], since: int) -> int | None:
        """Tokens generated since the total was ``since`` (the texts, when not exact)."""
        if self.exact:
            return self.total - since
        tokenizer = getattr(self.backend, "tokenizer", None)
        if tokenizer is None:
            return None
        return sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)


def same(a: Sequence[str], b: Sequence[str]) -> int:
    return sum(x == y for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--_shard-worker", dest="shard_worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=None, help="reuse/build results/ here")
    parser.add_argument("--model", default=None, help="a model folder instead of the tiny one")
    parser.add_argument(
        "--questions", type=Path, default=None, help="LLaVA-CoT .jsonl or sharegpt .json split"
    )
    parser.add_argument("--backend", default="transformers", help="name for load_backend")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="auto", help="transformers backend only")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk-size", type=int, default=None, help="default: --batch-size")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--seed", type=int, default=20251)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="CPU only: torch threads of the in-process modes and of the single process; each "
        "of the N shard processes gets threads // N (default: every core)",
    )
    parser.add_argument(
        "--what",
        choices=("all", "batching", "shards"),
        default="all",
        help="batching: batched vs one prompt per call only; shards: N shards vs one only "
        "(vLLM on one GPU: run them separately, each engine takes its memory share)",
    )
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm only")
    parser.add_argument("--max-model-len", type=int, default=None, help="vllm only")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.shard_worker:
        shard_worker(args.shard_worker)
        return
    args.chunk_size = args.chunk_size or args.batch_size
    if args.chunk_size % args.batch_size:
        raise SystemExit("--chunk-size must be a multiple of --batch-size")
    if args.shards < 2 and args.what != "batching":
        raise SystemExit("--shards must be at least 2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:  # the weight-loading bars of every load would bury the figures
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError:
        pass
    if not visible_gpus() or args.device == "cpu":
        import torch

        torch.set_num_threads(args.threads)
    command_line = shlex.join([os.path.relpath(sys.executable, ROOT), *sys.argv])

    with tempfile.TemporaryDirectory(prefix="gen-throughput-") as tmp:
        scratch = Path(tmp)
        results = (args.workdir or scratch) / "results"
        config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
        questions = args.questions or build_questions(results, config)
        model = args.model or str(build_tiny_model(results, config, questions))
        requests = load_requests(questions, args.prompts)
        report = measure(args, model, requests, sampling_of(args), scratch)
    report.update(command=command_line, model=model, questions=str(questions))
    print_report(report, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")


def measure(
    args: argparse.Namespace,
    model: str,
    requests: Sequence[GenerationRequest],
    sampling: SamplingParams,
    scratch: Path,
) -> dict[str, Any]:
    """Every mode once per round (alternating order); samples, medians and output checks."""
    modes: dict[str, Callable[[], list[str]]] = {}
    counters: dict[str, TokenCounter] = {}
    batched: GenerationBackend | None = None
    if args.what != "shards":
        batched = load_backend(args.backend, model, **backend_options(args, args.batch_size))
        if args.backend == "vllm":
            # One engine serves both: vLLM batches whatever is in flight (batch_size only names
            # seed groups there), and two engines would not fit one GPU's memory share.
            single = batched
        else:
            single = load_backend(args.backend, model, **backend_options(args, 1))
        for backend in (batched, single):  # first-call costs (allocations, lazy init) untimed
            backend.generate(requests[:1], sampling)
        counters = {"batched": TokenCounter(batched)}
        counters["per call"] = counters["batched"] if single is batched else TokenCounter(single)
        modes["batched"] = lambda: batched.generate(requests, sampling)
        modes["per call"] = lambda: [t for r in requests for t in single.generate([r], sampling)]
    runner = ShardRunner(args, model, requests, scratch) if args.what != "batching" else None

    samples: dict[str, list[float]] = {name: [] for name in modes}
    outputs: dict[str, list[str]] = {}
    tokens: dict[str, int | None] = {}
    stable = {name: True for name in modes}
    shard_checks: list[dict[str, int]] = []
    worker_reports: dict[str, list[list[dict]]] = {"single": [], "shards": []}
    if runner:
        samples.update(single=[], shards=[])
    for round_index in range(args.rounds):
        forward = round_index % 2 == 0
        for name in list(modes) if forward else list(modes)[::-1]:
            seconds, texts, count = timed(modes[name], counters[name])
            samples[name].append(seconds)
            tokens.setdefault(name, count)
            stable[name] &= outputs.setdefault(name, texts) == texts
        if runner:
            processes = [("single", 1), ("shards", args.shards)]
            folders: dict[str, list[Path]] = {}
            for name, count in processes if forward else processes[::-1]:
                seconds, folders[name], reports = runner.run(f"r{round_index}-{name}", count)
                samples[name].append(seconds)
                worker_reports[name].append(reports)
            gathered = {
                name: gather(
                    requests,
                    sampling,
                    folders[name],
                    scratch / f"r{round_index}-gather-{name}",
                    args.chunk_size,
                    args.batch_size,
                )
                for name in folders
            }
            check = {"vs single": same(gathered["shards"], gathered["single"])}
            if "batched" in outputs:
                check["vs batched"] = same(gathered["shards"], outputs["batched"])
            shard_checks.append(check)
        print(
            f"round {round_index + 1}: "
            + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in samples.items()),
            flush=True,
        )

    median = {name: statistics.median(values) for name, values in samples.items()}
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "settings": {key: getattr(args, key) for key in SETTINGS},
        "samples_s": samples,
        "median_s": median,
        "requests_per_s": {name: len(requests) / seconds for name, seconds in median.items()},
    }
    if batched is not None:
        report.update(
            generated_tokens=tokens,
            tokens_counted="exact" if counters["batched"].exact else "re-tokenised texts",
            speedup_batched_over_per_call=median["per call"] / median["batched"],
            identical_batched_vs_per_call=same(outputs["batched"], outputs["per call"]),
            outputs_stable_across_rounds=stable,
        )
        if None not in tokens.values():
            report["tokens_per_s"] = {name: tokens[name] / median[name] for name in modes}
    if runner:
        report["shards"] = {
            "count": args.shards,
            "speedup_shards_over_single": median["single"] / median["shards"],
            "placement": {"single": runner.placement(1), "shards": runner.placement(args.shards)},
            "identical_per_round": shard_checks,
            # The slowest process of each run, median over rounds.
            "load_s": {
                name: statistics.median(max(r["load_s"] for r in rs) for rs in runs)
                for name, runs in worker_reports.items()
            },
            "generate_s": {
                name: statistics.median(max(r["generate_s"] for r in rs) for rs in runs)
                for name, runs in worker_reports.items()
            },
        }
    return report


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        device = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
    else:
        device = "no GPU"
    cores = len(os.sched_getaffinity(0))
    return f"{platform.machine()}, {cores} cores, {device}, torch {torch.__version__}"


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    n = args.prompts
    median, samples = report["median_s"], report["samples_s"]
    print()
    print(f"command: {report['command']}")
    print(f"machine: {report['machine']}; {report['date']}")
    print(
        f"{n} prompts, greedy, at most {args.max_new_tokens} new tokens, backend "
        f"{args.backend}, {args.dtype}, {args.rounds} rounds (median)"
    )
    if "speedup_batched_over_per_call" in report:
        tokens_per_s = report.get("tokens_per_s", {})
        rows = [
            ("batched", f"batched ({n} in one call, batch {args.batch_size})"),
            ("per call", f"one prompt per call ({n} calls, batch 1)"),
        ]
        print()
        print(f"{'mode':<50} {'median s':>9} {'req/s':>8} {'tok/s':>8}  samples")
        for key, label in rows:
            tps = f"{tokens_per_s[key]:8.1f}" if key in tokens_per_s else f"{'-':>8}"
            values = "/".join(f"{v:.2f}" for v in samples[key])
            print(f"{label:<50} {median[key]:9.2f} {n / median[key]:8.2f} {tps}  {values}")
        print(
            f"speed-up batched over one prompt per call: "
            f"{report['speedup_batched_over_per_call']:.2f}x; identical greedy outputs: "
            f"{report['identical_batched_vs_per_call']}/{n}; each mode's outputs the same "
            f"every round: {report['outputs_stable_across_rounds']}"
        )
        print(f"generated tokens ({report['tokens_counted']}): {report['generated_tokens']}")
    if "shards" in report:
        shards = report["shards"]
        rows = [
            ("single", f"1 process, all chunks ({shards['placement']['single']})"),
            ("shards", f"{args.shards} shard processes ({shards['placement']['shards']})"),
        ]
        print()
        print("wall clock of whole processes: start, imports, model load and generation")
        print(f"{'mode':<50} {'median s':>9} {'req/s':>8} {'load s':>8}  samples")
        for key, label in rows:
            values = "/".join(f"{v:.2f}" for v in samples[key])
            load = shards["load_s"][key]
            print(f"{label:<50} {median[key]:9.2f} {n / median[key]:8.2f} {load:8.2f}  {values}")
        checks = "; ".join(
            ", ".join(f"{name} {count}/{n}" for name, count in check.items())
            for check in shards["identical_per_round"]
        )
        print(
            f"speed-up of {args.shards} shards over one process: "
            f"{shards['speedup_shards_over_single']:.2f}x; gathered shards identical, per "
            f"round: {checks}"
        )
        generate = shards["generate_s"]
        print(
            f"generation alone (slowest process, median): single {generate['single']:.2f} s, "
            f"shards {generate['shards']:.2f} s"
        )


if __name__ == "__main__":
    main()
