"""One Sherlock training step: ours against a seed-style step, same model, same batches.

    .venv/bin/python benchmarks/sherlock_step.py                      # after `snakemake offline`
    .venv/bin/python benchmarks/sherlock_step.py --model M --prefs P --batch 4 --rounds 15
    .venv/bin/python benchmarks/sherlock_step.py --vision-heavy DIR --memory   # needs no build

ours:  the reference log-probabilities come from a table filled once per stage; one
       forward/backward over the ten sequences of every record in the batch, each distinct
       sequence once (offline pairs have p_w = p_l, so A1 = A2 and B1 = B2: 6 of 10 remain).
ours shared: the same, each record's image through the vision tower once per pass for all its
       sequences (``share_vision_features``, the trainer's default; "ours" is without it).
seed:  what the reference scripts do: the reference model is run again every step, and the
       direct pair, the four C_l pairs and the four C_w pairs are three separate
       forward/backward passes (gradients accumulated) before the optimiser step.

Both start from the same weights with their own AdamW and see the same batches; a round runs
one step of each, in alternating order, so machine noise hits both alike. The losses must agree
(the gradients are the same mathematics), which the script checks and prints. It also times the
reference pass over one batch, which ours pays once per record per stage (the precompute): the
"ours + precompute" ratio is the one-epoch worst case.

``--vision-heavy DIR`` builds (once, under DIR, nothing downloaded) a tiny Llama-3.2-Vision
whose vision tower costs, per image, the same multiple of its language model's cost per
sequence as Llama-3.2-11B-Vision's does (``vision_heavy.py`` counts both with torch's FLOP
counter, the 11B on the meta device), plus offline-style preference records of the synthetic
data, and freezes the vision tower and projector as the paper preset does. ``--memory`` then
measures each variant's peak memory in a fresh process of its own.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
import vision_heavy  # benchmarks/, beside this script
import yaml
from transformers import AutoModelForImageTextToText, AutoProcessor

from sherlock.data.prompts import load_prompt
from sherlock.perturbation.recipes import PerturbationConfig
from sherlock.preference.encoding import collate_sequences, encode_example, sequence_log_probs
from sherlock.preference.freezing import freeze
from sherlock.preference.losses import SEQUENCE_NAMES, sherlock_loss
from sherlock.preference.records import load_preferences
from sherlock.preference.trainer import PreferenceCollator, batch_log_probs, by_name, record_betas

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {
    "direct": ("direct_w", "direct_l"),
    "refine_l": ("l_A1", "l_B1", "l_A2", "l_B2"),
    "refine_w": ("w_A1", "w_B1", "w_A2", "w_B2"),
}


def take(batch: dict, rows: list[int]) -> dict:
    """The sub-batch of the given sequence rows (Qwen2-VL: pixel rows follow image_grid_thw;
    Mllama: one pixel row per sequence)."""
    index = torch.tensor(rows)
    out = {k: v[index] for k, v in batch.items() if k not in ("pixel_values", "image_grid_thw")}
    if "image_grid_thw" not in batch and "pixel_values" in batch:
        out["pixel_values"] = batch["pixel_values"][index]
    elif "image_grid_thw" in batch:
        grid = batch["image_grid_thw"]
        sizes = grid.prod(-1).tolist()
        starts = [0, *torch.tensor(sizes).cumsum(0).tolist()]
        out["image_grid_thw"] = grid[index]
        out["pixel_values"] = torch.cat(
            [batch["pixel_values"][starts[r] : starts[r] + sizes[r]] for r in rows]
        )
    return out


def seed_group_loss(name: str, policy: dict, reference: dict, beta_dpo, beta_sc) -> torch.Tensor:
    """The part of docs/method.md §6's loss that one seed pass optimises."""

    def delta(a: str, b: str) -> torch.Tensor:
        return (policy[a] - reference[a]) - (policy[b] - reference[b])

    if name == "direct":
        return 0.2 * (-F.logsigmoid(beta_dpo * delta("direct_w", "direct_l"))).mean()
    c = name[-1]
    inner = beta_sc * (delta(f"{c}_A1", f"{c}_B1") + delta(f"{c}_A2", f"{c}_B2"))
    return 0.8 * ((1 - inner) ** 2).mean()


def ours_step(model, optimiser, batch, records, ref_table, beta_dpo, beta_sc, share) -> float:
    optimiser.zero_grad()
    policy_logps, _ = batch_log_probs(model, batch, share)
    loss, _ = sherlock_loss(
        by_name(policy_logps, records),
        by_name(ref_table, records),
        beta_dpo,
        beta_sc,
        dpo_coef=0.2,  # the coefficients the seed-style loss below hard-codes
        sc_coef=0.8,
    )
    loss.backward()
    optimiser.step()
    return float(loss.detach())


def seed_step(model, reference_model, optimiser, batch, records, beta_dpo, beta_sc) -> float:
    optimiser.zero_grad()
    total = 0.0
    for name, members in GROUPS.items():
        rows = [r * 10 + SEQUENCE_NAMES.index(m) for r in range(records) for m in members]
        sub = take(batch, rows)
        with torch.no_grad():
            ref, _ = sequence_log_probs(reference_model, sub)
        pol, _ = sequence_log_probs(model, sub)
        pol = {m: pol.view(records, len(members))[:, j] for j, m in enumerate(members)}
        ref = {m: ref.view(records, len(members))[:, j] for j, m in enumerate(members)}
        loss = seed_group_loss(name, pol, ref, beta_dpo, beta_sc)
        loss.backward()
        total += float(loss.detach())
    optimiser.step()
    return total


VARIANTS = ("ours shared", "ours", "seed")


def resident_bytes() -> int:
    """This process's resident set now (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def step_peak(device: torch.device, run: Callable[[], object]) -> tuple[int, int]:
    """(memory in use when ``run`` starts, the most in use while it runs), in bytes.

    CUDA: the allocator's own counters. CPU: the resident set, sampled every millisecond by a
    thread (activations live for most of a step, so the sampling sees them), after handing
    freed heap back to the system so that the start is what is really held.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return before, torch.cuda.max_memory_allocated(device)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = peak = resident_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, resident_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return before, max(peak, resident_bytes())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="results/models/sft")
    parser.add_argument("--prefs", default="results/data/offline_prefs.json")
    parser.add_argument("--batch", type=int, default=4, help="records per step")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, help="torch's intra-op threads (CPU)")
    parser.add_argument(
        "--freeze-vision",
        action="store_true",
        help="leave the vision tower and projector untrained, as the paper preset does",
    )
    parser.add_argument(
        "--vision-heavy",
        metavar="DIR",
        help="build (once) and use the tiny Mllama as vision-heavy as the paper's model",
    )
    parser.add_argument("--vision-depth", type=int, default=vision_heavy.VISION_DEPTH)
    parser.add_argument(
        "--train-vision",
        action="store_true",
        help="with --vision-heavy: train the vision tower and projector too",
    )
    parser.add_argument(
        "--memory", action="store_true", help="each variant's peak memory, in its own process"
    )
    parser.add_argument("--peak-of", choices=VARIANTS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.vision_heavy:
        records = (args.warmup + args.rounds) * args.batch
        model_dir, prefs = vision_heavy.build(Path(args.vision_heavy), records, args.vision_depth)
        args.model, args.prefs = str(model_dir), str(prefs)
        args.freeze_vision = not args.train_vision
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    processor = AutoProcessor.from_pretrained(args.model)
    base = AutoModelForImageTextToText.from_pretrained(args.model, dtype=dtype).to(device)
    # dropout off in all, so every run sees the same function (the trainer does the same)
    base.eval()
    if args.freeze_vision:
        freeze(base, vision_tower=True, projector=True, language_model=False)
    names = (args.peak_of,) if args.peak_of else VARIANTS
    models = {name: copy.deepcopy(base) for name in names}
    reference_model = None
    if "seed" in names or not args.peak_of:
        reference_model = copy.deepcopy(base).requires_grad_(False)
    del base
    optimisers = {
        name: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=args.lr)
        for name, m in models.items()
    }

    examples = load_preferences(args.prefs)
    rounds = 1 if args.peak_of else args.warmup + args.rounds
    needed = rounds * args.batch
    if len(examples) < needed:
        raise SystemExit(f"{args.prefs}: {len(examples)} records, the run needs {needed}")
    refine = load_prompt("refine")
    # The embedded default's recipe, β and β_r (config/config.yaml).
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    common = default["preference"]["common"]
    config = PerturbationConfig.from_dict(default["perturbation"]).coefficients(
        common["pref_beta"], common["pref_beta_refine"]
    )
    pad = processor.tokenizer.pad_token_id
    batches = []
    collator = PreferenceCollator(pad)
    for n in range(rounds):
        chunk = examples[n * args.batch : (n + 1) * args.batch]
        encoded = [encode_example(processor, ex, refine) for ex in chunk]
        betas = torch.tensor([record_betas(ex, config) for ex in chunk], device=device)
        items = [
            {"index": i, "sequences": seqs, "beta_dpo": b[0], "beta_sc": b[1]}
            for i, (seqs, b) in enumerate(zip(encoded, betas, strict=True))
        ]
        ours_batch = {k: v.to(device) for k, v in collator(items).items() if torch.is_tensor(v)}
        seed_batch = collate_sequences([s for seqs in encoded for s in seqs], pad)
        seed_batch = {k: v.to(device) for k, v in seed_batch.items() if torch.is_tensor(v)}
        beta_dpo, beta_sc = betas[:, 0].to(dtype), betas[:, 1].to(dtype)
        batches.append((ours_batch, seed_batch, beta_dpo, beta_sc))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(who: str, ours_batch, seed_batch, beta_dpo, beta_sc, ref_table) -> float:
        if who == "seed":
            return seed_step(
                models[who], reference_model, optimisers[who], seed_batch, args.batch,
                beta_dpo, beta_sc,
            )
        return ours_step(
            models[who], optimisers[who], ours_batch, args.batch, ref_table, beta_dpo, beta_sc,
            share=who == "ours shared",
        )

    if args.peak_of:  # one variant alone in this fresh process: its peak memory
        ours_batch, seed_batch, beta_dpo, beta_sc = batches[0]
        ref_table = torch.linspace(-40.0, -20.0, 10 * args.batch, device=device, dtype=dtype)

        def run() -> None:
            step(args.peak_of, ours_batch, seed_batch, beta_dpo, beta_sc, ref_table)

        run()  # the first step creates the optimiser state: measure the second
        before, peak = step_peak(device, run)
        print(json.dumps({"variant": args.peak_of, "before": before, "peak": peak}))
        return

    if args.vision_heavy:
        paper = vision_heavy.paper_ratio()
        tiny = vision_heavy.batch_ratio(models["ours"], batches[0][0])
        print(
            f"vision/language forward FLOPs: Llama-3.2-11B-Vision {paper['vision_tflops']:.1f} "
            f"TFLOPs per image (4 tiles of 560²) / {paper['text_tflops']:.1f} TFLOPs per "
            f"{vision_heavy.PAPER_TOKENS}-token sequence = R {paper['ratio']:.2f}; this model "
            f"{tiny['vision_flops'] / 1e9:.2f} / {tiny['text_flops'] / 1e9:.2f} GFLOPs per "
            f"distinct sequence of round 0 = R {tiny['ratio']:.2f}"
        )

    # Wall time, and this process's CPU time (all its threads): on a shared machine the second
    # is less disturbed by other processes, though it counts threads' spinning as work.
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    keys = (*VARIANTS, "reference pass", "reference pass shared")
    times = {clock: {key: [] for key in keys} for clock in clocks}

    def timed(run: Callable[[], object]) -> tuple[object, dict[str, float]]:
        sync()
        starts = {clock: read() for clock, read in clocks.items()}
        result = run()
        sync()
        return result, {clock: read() - starts[clock] for clock, read in clocks.items()}

    gaps = []
    for n, (ours_batch, seed_batch, beta_dpo, beta_sc) in enumerate(batches):
        spent = {}
        for key, share in (("reference pass", False), ("reference pass shared", True)):
            with torch.no_grad():  # what the precompute costs for this batch, once per stage
                (ref_table, _), spent[key] = timed(
                    partial(batch_log_probs, reference_model, ours_batch, share)
                )
        order = VARIANTS[n % 3 :] + VARIANTS[: n % 3]  # each goes first in turn
        losses = {}
        for who in order:
            losses[who], spent[who] = timed(
                partial(step, who, ours_batch, seed_batch, beta_dpo, beta_sc, ref_table)
            )
        if n >= args.warmup:
            for clock in clocks:
                for key in keys:
                    times[clock][key].append(spent[key][clock])
        seed_loss = losses["seed"]
        gaps.append(
            max(abs(losses[w] - seed_loss) for w in VARIANTS) / max(abs(seed_loss), 1e-12)
        )
        print(f"round {n}: loss " + " ".join(f"{w} {losses[w]:.6f}" for w in VARIANTS))

    tokens = int(batches[0][1]["attention_mask"].sum())
    distinct = int(batches[0][0]["input_ids"].shape[0])
    print(
        f"\nmodel {Path(args.model)} on {device} ({args.dtype}, {torch.get_num_threads()} "
        f"threads), {args.batch} records (= {10 * args.batch} sequences, {tokens} tokens in "
        f"round 0; {distinct} distinct) per step, vision tower "
        f"{'frozen' if args.freeze_vision else 'trained'}, {args.rounds} timed rounds after "
        f"{args.warmup} warm-up"
    )
    for clock in clocks:
        med = {k: statistics.median(v) for k, v in times[clock].items()}
        print(f"{clock} time:")
        for key, value in med.items():
            samples = [round(t * 1000) for t in times[clock][key]]
            print(f"  median {key:22s} {value * 1000:9.1f} ms   samples {samples}")
        for who, ref in (("ours", "reference pass"), ("ours shared", "reference pass shared")):
            with_ref = med["seed"] / (med[who] + med[ref])
            print(f"  seed / {who:28s} {med['seed'] / med[who]:.2f}x")
            print(f"  seed / ({who} + precompute) {'':{15 - len(who)}s}{with_ref:.2f}x")
        print(f"  ours / ours shared                  {med['ours'] / med['ours shared']:.2f}x")
    print(f"largest relative loss gap to seed     {max(gaps):.2e}")

    if args.memory:
        argv = [sys.executable, __file__, "--model", args.model, "--prefs", args.prefs]
        argv += ["--batch", str(args.batch), "--device", args.device, "--dtype", args.dtype]
        argv += ["--freeze-vision"] if args.freeze_vision else []
        argv += ["--threads", str(args.threads)] if args.threads else []
        kind = "allocated CUDA memory" if device.type == "cuda" else "resident memory"
        print(f"\npeak {kind} of a step, each variant alone in a fresh process:")
        for who in VARIANTS:
            out = subprocess.run(
                [*argv, "--peak-of", who], capture_output=True, text=True, check=True
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            rise = (result["peak"] - result["before"]) / 2**20
            print(
                f"  {who:12s} peak {result['peak'] / 2**20:8.1f} MiB, "
                f"of which the step's own {rise:8.1f} MiB (above what was held at its start)"
            )


if __name__ == "__main__":
    main()
