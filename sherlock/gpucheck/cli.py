"""``sherlock-gpu-check``: does this node run the stack, how fast, and what will the run cost?

    sherlock-gpu-check                                     # the embedded default
    sherlock-gpu-check --configfile config/presets/paper_llama32v.yaml
    sherlock-gpu-check --smoke --configfile config/presets/paper_llama32v.yaml   # CPU, toy size

1. The environment's verdicts (``sherlock.gpucheck.environment``).
2. With a GPU (and without ``--smoke``): the preset's base architecture at real size, random
   weights, made on the GPU in bf16 (``sherlock.gpucheck.models``), then measured
   (``sherlock.gpucheck.measure``): the Sherlock step with vision sharing on and off, the SFT
   step, batched generation against one prompt per call, the largest per-device batches.
   With ``--smoke``: the same flow at toy size on the CPU in float32 (about a minute), the
   embedded default's tiny model at its own size. Without a GPU and without ``--smoke``:
   nothing is measured.
3. The price (``sherlock.gpucheck.price``): GPU-hours per stage and in total, from the measured
   utilisation and generation speed when the real size was measured on a GPU, else from the
   FLOP model at the assumed utilisation (an estimate, and said to be one).

Configs are laid over the embedded default as Snakemake lays ``--configfile`` over it, and
checked against config/schema.yaml when jsonschema is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from sherlock.ablations.runs import overlay  # a preset laid over the config, as Snakemake lays it
from sherlock.gpucheck.architectures import base_model_config, shape_of
from sherlock.gpucheck.hardware import DEFAULT, accelerator
from sherlock.gpucheck.price import Rates, header, judge_shape_of, price, table, total_hours
from sherlock.gpucheck.workload import Tokens, image_pixels, source_tokens, stages, training_of

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "config" / "config.yaml"
SCHEMA = ROOT / "config" / "schema.yaml"


def load_config(configfiles: list[str]) -> tuple[dict[str, Any], str]:
    """The run config and whether it was validated."""
    if not DEFAULT_CONFIG.is_file():
        raise SystemExit(f"{DEFAULT_CONFIG}: not found (run from a checkout of the workflow)")
    config = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    for path in configfiles:
        try:
            preset = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as error:
            raise SystemExit(f"--configfile {path}: {error}") from None
        config = overlay(config, preset)
    try:
        from sherlock.config import ConfigError, validate_config
        from sherlock.node import apply_layout
    except ImportError as error:
        return config, f"not validated ({error.name} is not installed)"
    try:
        validate_config(config, SCHEMA)
        apply_layout(config)  # node.gpus → GPU tags and shards, as the workflow resolves them
    except ConfigError as error:
        raise SystemExit(str(error)) from None
    return config, "valid against config/schema.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sherlock-gpu-check",
        description="Check this node, measure the preset's model at real size on a GPU "
        "(--smoke: toy size on the CPU), and price the run in GPU-hours.",
    )
    parser.add_argument(
        "--configfile",
        nargs="*",
        default=[],
        help="presets laid over the embedded default, in order (as snakemake --configfile)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="measure at toy size on the CPU (about a minute)"
    )
    parser.add_argument(
        "--gpu",
        default=None,
        help="accelerator the estimate assumes without "
        f"a measurement (default: the one found, else {DEFAULT})",
    )
    parser.add_argument(
        "--mfu",
        type=float,
        default=0.35,
        help="training utilisation the estimate assumes (default 0.35)",
    )
    parser.add_argument("--question-tokens", type=int, help="override the data's question length")
    parser.add_argument("--answer-tokens", type=int, help="override the data's answer length")
    parser.add_argument(
        "--records",
        type=int,
        default=None,
        help="records per measured Sherlock step (default: the config's "
        "per-device batch; smoke: 2)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="tokens each measured generation writes (default 128; smoke 8)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed steps (default 3; smoke 1)"
    )
    parser.add_argument(
        "--no-batch-search",
        action="store_true",
        help="skip the search for the largest per-device batch (GPU)",
    )
    parser.add_argument("--output", help="also write every figure as JSON to this file")
    return parser.parse_args(argv)


def section(title: str) -> None:
    print(f"\n== {title}")


def measure(config: dict[str, Any], args: argparse.Namespace, tokens: Tokens) -> dict[str, Any]:
    """Build the model (real size on the GPU, or toy size on the CPU) and time our code."""
    import torch

    from sherlock.gpucheck import measure as m
    from sherlock.gpucheck.models import (
        TOY_IMAGE,
        build_model,
        local_processor,
        standin_processor,
        toy_config,
        with_token_ids,
    )

    smoke = args.smoke
    device = torch.device("cpu" if smoke else "cuda")
    dtype = torch.float32 if smoke else torch.bfloat16
    arch, arch_source = base_model_config(config)
    tiny = config["base_model"]["path"] == "tiny"
    min_pixels, max_pixels = image_pixels(config)
    if smoke and not tiny:
        arch, min_pixels, max_pixels = toy_config(arch), TOY_IMAGE**2, TOY_IMAGE**2
        size = "toy size (same family)"
        question, answer = 12, 48
    else:
        size = "real size" if not tiny else "the tiny model's own size"
        question, answer = tokens.question, tokens.answer
    if smoke:
        question, answer = min(question, 12), min(answer, 48)
    processor = None if (smoke or tiny) else local_processor(config["base_model"]["path"])
    processor_note = "the model's own (local files)"
    if processor is None:
        processor = standin_processor(arch, min_pixels, max_pixels)
        arch = with_token_ids(arch, processor, real_vocab=not smoke)
        processor_note = "stand-in (family's image processor, small trained tokenizer)"
    shape = shape_of(arch)
    section(f"Model: {shape.model_type} at {size}, random weights, on {device}, {dtype}")
    print(f"  architecture from {arch_source}; processor: {processor_note}")
    torch.manual_seed(config["seed"])
    model = build_model(arch, processor, device, dtype, attention="sdpa")
    count = sum(p.numel() for p in model.parameters())
    print(f"  {count / 1e6:.2f}M parameters")
    gpu = accelerator(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    peak = gpu.bf16_tflops * 1e12 if gpu else None

    pref = {**config["preference"]["common"], **config["preference"]["offline"]}
    sft_hp = {**config["sft"]["common"], **config["sft"]["r0"]}
    repeats = args.repeats or (1 if smoke else 3)
    pref_settings = m.StepSettings(
        training_of(pref, "preference"),
        bool(pref.get("gradient_checkpointing")),
        dtype == torch.bfloat16,
        pref.get("cutoff_len"),
        (min_pixels, max_pixels),
        repeats,
        0 if smoke else 1,
    )
    sft_settings = replace(
        pref_settings,
        training=training_of(sft_hp, "sft"),
        gradient_checkpointing=not sft_hp.get("disable_gradient_checkpointing", False),
        cutoff=sft_hp.get("cutoff_len"),
    )
    records = args.records or (2 if smoke else int(pref.get("per_device_train_batch_size") or 1))
    results: dict[str, Any] = {
        "size": size,
        "device": str(device),
        "parameters": count,
        "processor": processor_note,
        "timings": [],
    }
    with tempfile.TemporaryDirectory(prefix="sherlock-gpu-check-") as scratch:
        folder = Path(scratch)
        image = m.noise_image(folder, max_pixels, config["seed"])
        recipe = config["perturbation"]["recipe"]
        examples = m.preference_examples(
            processor.tokenizer, image, records, question, answer, recipe, config["seed"]
        )
        timings = []
        for share in (True, False):
            step, reference = m.sherlock_step(
                model,
                processor,
                examples,
                config,
                pref_settings,
                share,
                shape,
                folder / "run",
                peak,
                records,
            )
            timings += [step, reference]
        sft_batch = 2 if smoke else int(sft_hp.get("per_device_train_batch_size") or 1)
        timings.append(
            m.sft_step(model, processor, examples[0], sft_settings, sft_batch, shape, peak)
        )
        gen = config["generation"]
        batch = 4 if smoke else gen["batch_size"]
        prompts = [
            e.question
            for e in m.preference_examples(
                processor.tokenizer, image, batch, question, answer, recipe, config["seed"] + 1
            )
        ]
        new_tokens = args.max_new_tokens or (8 if smoke else 128)
        timings += list(
            m.generation(
                model,
                processor,
                image,
                prompts,
                batch,
                new_tokens,
                gen["sherlock_sft"],
                (min_pixels, max_pixels),
                config["seed"],
            )
        )
        if not args.no_batch_search:

            def try_sherlock(size: int) -> None:
                many = m.preference_examples(
                    processor.tokenizer, image, size, question, answer, recipe, 0
                )
                trainer = m.sherlock_trainer(
                    model, processor, many, config, pref_settings, True, size, folder / "search"
                )
                trainer.train_dataset.reference_logps = torch.zeros(size, 10)
                batch_in = trainer.data_collator([trainer.train_dataset[i] for i in range(size)])
                trainer.training_step(trainer.model, batch_in)
                trainer.model.zero_grad(set_to_none=True)

            def try_sft(size: int) -> None:
                m.sft_step(
                    model,
                    processor,
                    examples[0],
                    replace(sft_settings, repeats=1, warmup=0),
                    size,
                    shape,
                    peak,
                )

            results["largest_batch"] = {
                "sherlock_records": m.largest_batch(try_sherlock, device, 64),
                "sft_sequences": m.largest_batch(try_sft, device, 256),
            }
    results["timings"] = [t.as_dict() for t in timings]
    section("Measured (" + ("toy size, CPU: not the preset's speed" if smoke else size) + ")")
    print(f"  {'what':34} {'s/step':>9} {'s/record':>9} {'tok/s':>9} {'peak GiB':>9} {'MFU':>6}")
    for t in timings:
        mem = f"{t.peak_memory_gib:.1f}" if t.peak_memory_gib is not None else "n/a"
        mfu = f"{t.mfu:.1%}" if t.mfu is not None else "n/a"
        print(
            f"  {t.name:34} {t.seconds:>9.3f} {t.seconds_per_record:>9.3f} "
            f"{t.tokens_per_second:>9.1f} {mem:>9} {mfu:>6}   {t.note}"
        )
    by_name = {t.name: t for t in timings}
    shared = by_name["Sherlock step, vision shared"].seconds
    unshared = by_name["Sherlock step, vision per sequence"].seconds
    batched = by_name[f"generation, batch {batch}"]
    single = by_name["generation, one per call"]
    ratios = {
        "vision_sharing_speedup": unshared / shared,
        "batched_generation_speedup": batched.tokens_per_second / single.tokens_per_second
        if single.tokens_per_second
        else None,
    }
    results["ratios"] = ratios
    caveat = " (toy size, one step each: proves the code path, measures nothing)" if smoke else ""
    print(
        f"  vision sharing: {ratios['vision_sharing_speedup']:.2f}× faster per step; batched "
        f"generation: {ratios['batched_generation_speedup'] or 0:.2f}× the tokens/s of one "
        f"prompt per call{caveat}"
    )
    if "largest_batch" in results:
        lb = results["largest_batch"]
        print(
            f"  largest per-device batch: Sherlock {lb['sherlock_records']} records; "
            f"SFT {lb['sft_sequences']} sequences"
        )
    if not smoke and gpu:
        shared_on = bool(pref.get("share_vision_features", True))
        sherlock_name = "Sherlock step, vision " + ("shared" if shared_on else "per sequence")
        results["rates"] = {
            "mfu_sherlock": by_name[sherlock_name].mfu,
            "mfu_sft": by_name["SFT step (causal-LM loss)"].mfu,
            "seconds_per_token": batched.seconds / max(batched.tokens, 1),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config, validation = load_config(args.configfile)
    print("sherlock-gpu-check: " + (" + ".join(["embedded default", *args.configfile])))
    print(f"  config {validation}")

    import torch

    from sherlock.gpucheck.environment import verdicts

    has_gpu = torch.cuda.is_available()
    section("Environment")
    checks = verdicts(config, ROOT, needs_gpu=not args.smoke)
    for verdict in checks:
        print(verdict.line())

    tokens, data_source = source_tokens(config)
    if args.question_tokens:
        tokens = replace(tokens, question=args.question_tokens)
    if args.answer_tokens:
        tokens = replace(tokens, answer=args.answer_tokens)
    results: dict[str, Any] = {"verdicts": [v.__dict__ for v in checks]}
    if args.smoke or has_gpu:
        results["measured"] = measure(config, args, tokens)
    else:
        section("Measured")
        print("  nothing: no GPU here (--smoke runs the same measurements at toy size on the CPU)")

    arch, source = base_model_config(config)
    shape = shape_of(arch)
    _, max_pixels = image_pixels(config)
    found = accelerator(torch.cuda.get_device_name(0)) if has_gpu else None
    gpu = accelerator(args.gpu) if args.gpu else (found or accelerator(DEFAULT))
    measured = results.get("measured", {}).get("rates")
    if measured and found and gpu == found:
        rates = Rates(
            gpu,
            measured["mfu_sft"],
            measured["mfu_sherlock"],
            seconds_per_token=measured["seconds_per_token"],
            source=f"measured here on {found.name} (one GPU, no DeepSpeed)",
        )
        label = "measured"
    else:
        rates = Rates(
            gpu,
            args.mfu,
            args.mfu,
            source=f"ESTIMATE: FLOP model at an assumed "
            f"{args.mfu:.0%} utilisation on {gpu.name} (not measured)",
        )
        label = "estimate"
    rows = price(shape, stages(config, shape, tokens), rates, max_pixels, judge_shape_of(config))
    section(f"Price ({label}): GPU-hours per stage")
    print(header(shape, rates, tokens, source, max_pixels, data_source))
    print(table(rows))
    total = total_hours(rows)
    train_gpus = config["resources"]["train"]["gpu"] or 1
    print(
        f"  total {total:.3g} GPU-hours ({label}); about {total / train_gpus:.3g} hours on "
        f"{train_gpus} GPU(s) if every stage used them all"
    )
    results["price"] = {
        "label": label,
        "gpu": gpu.name,
        "total_gpu_hours": total,
        "stages": [
            {
                "stage": r.stage.name,
                "items": r.stage.items,
                "passes": r.stage.epochs,
                "flops_per_item": r.flops_per_item,
                "seconds_per_item": r.seconds_per_item,
                "gpu_hours": r.gpu_hours,
                "inputs": r.inputs,
            }
            for r in rows
        ],
    }
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1, default=str) + "\n")
    failed = [v.name for v in checks if v.status == "fail"]
    if failed:
        print(f"\nFAILED checks: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed and not args.smoke else 0


if __name__ == "__main__":
    sys.exit(main())
