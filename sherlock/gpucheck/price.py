"""The price of a run in GPU-hours: per stage, seconds per item × items × passes.

Seconds per item come from rates (``Rates``): model-FLOP utilisation for training (measured by
``sherlock-gpu-check`` on a GPU, or assumed) times the accelerator's peak, and for generation
the time per generated token (measured, or a roofline: each decoding step of a batch costs the
longer of its FLOPs at that utilisation and reading the weights and the batch's key/value
caches at ``bandwidth_efficiency`` of the memory bandwidth; the prompt is prefilled at the
training utilisation). Every row prints its inputs beside it. Pure Python: the Snakefile prints
the estimate in a dry run's plan (``print_dry_run_estimate``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sherlock.gpucheck.architectures import ModelShape, base_model_config, model_config, shape_of
from sherlock.gpucheck.flops import (
    Training,
    decode_flops_per_token,
    kv_cache_bytes,
    parameters,
    state_memory,
    text_forward_flops,
    trainable_parameters,
    training_flops,
    vision_forward_flops,
)
from sherlock.gpucheck.hardware import DEFAULT, Accelerator, accelerator
from sherlock.gpucheck.workload import Stage, Tokens, image_pixels, source_tokens, stages

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Rates:
    """How fast the work runs on one GPU, and where each figure comes from."""

    gpu: Accelerator
    mfu_sft: float = 0.35
    mfu_sherlock: float = 0.35
    bandwidth_efficiency: float = 0.6
    # Measured seconds per generated token at the measured batch (None: the roofline).
    seconds_per_token: float | None = None
    source: str = "estimate (assumed utilisation)"


@dataclass
class Row:
    stage: Stage
    flops_per_item: float  # training: per record per pass (the reference pass amortised)
    seconds_per_item: float
    inputs: str
    gpu_hours: float = field(init=False)

    def __post_init__(self) -> None:
        self.gpu_hours = gpu_hours(self.stage.items, self.stage.epochs, self.seconds_per_item)


def gpu_hours(items: int, passes: int, seconds_per_item: float) -> float:
    """GPU-hours of ``items`` × ``passes`` at ``seconds_per_item`` GPU-seconds each."""
    return items * passes * seconds_per_item / SECONDS_PER_HOUR


def _images_per_sequence(stage: Stage) -> float:
    """Vision passes per sequence: one per record when its sequences share it."""
    sequences = sum(s.count for s in stage.sequences)
    return 1.0 / sequences if stage.share_vision and stage.kind == "sherlock" else 1.0


def training_flops_per_item(shape: ModelShape, stage: Stage, max_pixels: int) -> float:
    """Forward + backward of a record's sequences, plus, for the Sherlock stages, its
    reference forward (once per stage, so divided by the epochs)."""
    images = _images_per_sequence(stage)
    total = sum(
        s.count * training_flops(shape, stage.training, s.tokens, s.targets, images, max_pixels)
        for s in stage.sequences
    )
    if stage.kind == "sherlock":
        forward = sum(
            s.count
            * (
                text_forward_flops(shape, s.tokens, s.targets)
                + images * vision_forward_flops(shape, max_pixels)
            )
            for s in stage.sequences
        )
        # Precomputed: once per stage; on the fly: a reference forward every pass.
        total += forward / stage.epochs if stage.precompute_reference else forward
    return total


def generation_seconds(
    shape: ModelShape, stage: Stage, rates: Rates, max_pixels: int
) -> tuple[float, float]:
    """(FLOPs, seconds) of one item's requests on one GPU."""
    gpu = rates.gpu
    peak = gpu.bf16_tflops * 1e12
    weight_bytes = 2 * parameters(shape).total
    flops = seconds = 0.0
    for r in stage.requests:
        prefill = text_forward_flops(shape, r.prompt, 1) + vision_forward_flops(shape, max_pixels)
        context = r.prompt + r.new // 2
        per_token = decode_flops_per_token(shape, context)
        if rates.seconds_per_token is not None:
            decode = r.new * rates.seconds_per_token
            prefill_seconds = 0.0  # in the measured time per token
        else:
            step_compute = stage.batch * per_token / (peak * rates.mfu_sft)
            step_memory = (weight_bytes + stage.batch * kv_cache_bytes(shape, context)) / (
                gpu.memory_tb_s * 1e12 * rates.bandwidth_efficiency
            )
            decode = r.new * max(step_compute, step_memory) / stage.batch
            prefill_seconds = prefill / (peak * rates.mfu_sft)
        flops += r.count * (prefill + r.new * per_token)
        seconds += r.count * (prefill_seconds + decode)
    return flops, seconds


def _training_inputs(shape: ModelShape, stage: Stage) -> str:
    t: Training = stage.training
    trainable = _count(trainable_parameters(shape, t))
    kind = f"LoRA r={t.lora_rank}" if t.lora else "full"
    frozen = "vision frozen" if t.freeze_vision else "vision trained"
    seqs = ", ".join(f"{s.count:g}×{s.tokens} tok ({s.targets} target)" for s in stage.sequences)
    extra = ""
    if stage.kind == "sherlock":
        extra = (
            f"; {stage.note}; vision {'shared' if stage.share_vision else 'per sequence'};"
            f" reference {'precomputed' if stage.precompute_reference else 'every step'}"
        )
    zero = stage.zero
    state = state_memory(
        parameters(shape).total,
        trainable_parameters(shape, t),
        stage.gpus,
        zero.stage,
        zero.offload_optimizer,
        zero.offload_parameters,
    )
    where = f"ZeRO-{zero.stage}" + (" + CPU offload" if zero.offload_optimizer else "")
    memory = (
        f"; weights+gradients+AdamW {state.on_gpu / 2**30:.1f} GiB a GPU of {stage.gpus}"
        f" ({where if zero.stage else 'no DeepSpeed'}; activations not counted)"
    )
    return f"{seqs}; trainable {trainable} ({kind}, {frozen}){extra}{memory}"


def price(
    shape: ModelShape,
    stage_list: Sequence[Stage],
    rates: Rates,
    max_pixels: int,
    judge_shape: ModelShape | None = None,
) -> list[Row]:
    """One row per stage."""
    peak = rates.gpu.bf16_tflops * 1e12
    rows = []
    for stage in stage_list:
        if stage.kind in ("sft", "sherlock"):
            flops = training_flops_per_item(shape, stage, max_pixels)
            mfu = rates.mfu_sft if stage.kind == "sft" else rates.mfu_sherlock
            seconds = flops / (peak * mfu)
            inputs = _training_inputs(shape, stage) + f"; MFU {mfu:.0%}"
        else:
            model = judge_shape if stage.kind == "judge" else shape
            if model is None:
                rows.append(Row(stage, 0.0, 0.0, "not priced: the judge's architecture is unknown"))
                continue
            pixels = 0 if stage.kind == "judge" else max_pixels
            # A measured speed is the base model's: the judge is another model (roofline).
            own = replace(rates, seconds_per_token=None) if stage.kind == "judge" else rates
            flops, seconds = generation_seconds(model, stage, own, pixels)
            reqs = ", ".join(
                f"{r.count:g}×({r.prompt} prompt → {r.new} new)" for r in stage.requests
            )
            how = (
                "measured s/token"
                if own.seconds_per_token is not None
                else f"roofline, batch {stage.batch}"
            )
            inputs = f"{reqs} tok; {how}"
        if stage.note and stage.kind not in ("sherlock",):
            inputs += f"; {stage.note}"
        rows.append(Row(stage, flops, seconds, inputs))
    return rows


def _count(n: float) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.3f}M"


def _human(n: float) -> str:
    for unit, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} "


def header(
    shape: ModelShape,
    rates: Rates,
    tokens: Tokens,
    source: str,
    max_pixels: int,
    data_source: str = "assumed",
) -> str:
    p = parameters(shape)
    t = shape.text
    per_token = 2 * (p.language - t.embed_rows * t.hidden)
    vision = vision_forward_flops(shape, max_pixels)
    lines = [
        f"architecture: {shape.model_type} from {source}",
        f"parameters N: {_count(p.total)} (vision tower {_count(p.vision)}, projector "
        f"{_count(p.projector)}, language model {_count(p.language)})",
        f"forward FLOPs per text token ≈ 2·N_lm = {_human(per_token)}FLOP (+ attention); "
        f"per image through the vision side: {_human(vision)}FLOP",
        "training FLOPs = forward F + backward 2F from the first trainable part on (frozen vision:"
        " none for it; LoRA: F + adapters)",
        f"data ({data_source}): question {tokens.question} tok, answer {tokens.answer} tok; "
        f"assumed: chat template"
        f" {tokens.template} tok, prefix {tokens.prefix_fraction:.0%} of an answer, Stage III "
        f"acceptance {tokens.acceptance:.0%}; images at {max_pixels} pixels at most",
        f"rates: {rates.source}; GPU {rates.gpu.name} ({rates.gpu.bf16_tflops:g} TFLOP/s bf16 "
        f"dense, {rates.gpu.memory_tb_s:g} TB/s); training MFU {rates.mfu_sft:.0%} (SFT), "
        f"{rates.mfu_sherlock:.0%} (Sherlock)",
    ]
    return "\n".join(lines)


def table(rows: Sequence[Row]) -> str:
    """The price, one line per stage and its inputs, then the total."""
    lines = [f"{'stage':44} {'items':>8} {'×':>2} {'FLOPs/item':>11} {'s/item':>9} {'GPU-h':>9}"]
    total = 0.0
    for row in rows:
        s = row.stage
        total += row.gpu_hours
        lines.append(
            f"{s.name:44} {s.items:>8} {s.epochs:>2} {_human(row.flops_per_item):>10}F"
            f" {row.seconds_per_item:>9.3g} {row.gpu_hours:>9.3g}"
        )
        lines.append(f"    per {s.item}: {row.inputs}")
    lines.append(f"{'total':44} {'':>8} {'':>2} {'':>11} {'':>9} {total:>9.3g}")
    return "\n".join(lines)


def total_hours(rows: Sequence[Row]) -> float:
    return sum(row.gpu_hours for row in rows)


def judge_shape_of(config: dict[str, Any]) -> ModelShape | None:
    """The llm judge's architecture (None for the exact judge or an unknown model)."""
    judge = config["online"]["judge"]
    if judge["kind"] != "llm":
        return None
    if judge["model"] == "tiny":
        tiny = config.get("tiny_judge", {})
        hidden = tiny.get("hidden_size", 64)
        return shape_of(
            {
                "model_type": "qwen2",
                "vocab_size": config["tiny_model"]["vocab_size"],
                "hidden_size": hidden,
                "intermediate_size": 4 * hidden,
                "num_hidden_layers": tiny.get("num_layers", 2),
                "num_attention_heads": max(1, hidden // 16),
            }
        )
    try:
        return shape_of(model_config(judge["model"])[0])
    except ValueError:
        return None


def estimate(
    config: dict[str, Any],
    gpu: str = DEFAULT,
    rates: Rates | None = None,
    tokens: Tokens | None = None,
    count_files_up_to: int | None = 20_000_000,
) -> str:
    """The header and price table of a run config (the data's lengths from its source unless
    ``tokens`` is given)."""
    cfg, source = base_model_config(config)
    shape = shape_of(cfg)
    rates = rates or Rates(accelerator(gpu) or accelerator(DEFAULT))
    _, max_pixels = image_pixels(config)
    if tokens is None:
        tokens, data_source = source_tokens(config)
    else:
        data_source = "given"
    rows = price(
        shape,
        stages(config, shape, tokens, count_files_up_to),
        rates,
        max_pixels,
        judge_shape_of(config),
    )
    head = header(shape, rates, tokens, source, max_pixels, data_source)
    return head + "\n" + table(rows)


DRY_RUN_FLAGS = ("--dry-run", "--dryrun", "-n")


def is_dry_run(argv: Sequence[str]) -> bool:
    """Whether a snakemake command line asks for a dry run (``-n``, ``-np``, ``--dry-run``)."""
    for arg in argv[1:]:
        if arg in DRY_RUN_FLAGS:
            return True
        if arg.startswith("-") and not arg.startswith("--") and arg[1:].isalpha() and "n" in arg:
            return True
    return False


_PRINTED = False


def print_dry_run_estimate(config: dict[str, Any], argv: Sequence[str] | None = None) -> None:
    """In a dry run, the run's estimated GPU-hours (to stderr; never fails the plan). Once per
    plan: an ablation loads the workflow once per run, and its first run stands for them."""
    global _PRINTED
    if _PRINTED or not is_dry_run(sys.argv if argv is None else argv):
        return
    _PRINTED = True
    try:
        text = estimate(config)
        total = text.rsplit("\n", 1)[-1].split()[-1]
        print(
            f"Estimated cost: {total} GPU-hours (an estimate from a FLOP model; "
            "sherlock-gpu-check measures the node):\n" + text,
            file=sys.stderr,
        )
    except Exception as error:  # noqa: BLE001 - a plan must not fail over its estimate
        print(f"Estimated cost: not available ({error})", file=sys.stderr)
