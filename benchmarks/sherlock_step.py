"""One Sherlock training step: ours against a seed-style step, same model, same batches.

    .venv/bin/python benchmarks/sherlock_step.py                      # after `snakemake offline`
    .venv/bin/python benchmarks/sherlock_step.py --model M --prefs P --batch 4 --rounds 15

ours:  the reference log-probabilities come from a table filled once per stage; one
       forward/backward over the ten sequences of every record in the batch, each distinct
       sequence once (offline pairs have p_w = p_l, so A1 = A2 and B1 = B2: 6 of 10 remain).
seed:  what the reference scripts do: the reference model is run again every step, and the
       direct pair, the four C_l pairs and the four C_w pairs are three separate
       forward/backward passes (gradients accumulated) before the optimiser step.

Both start from the same weights with their own AdamW and see the same batches; a round runs
one step of each, in alternating order, so machine noise hits both alike. The losses must agree
(the gradients are the same mathematics), which the script checks and prints. It also times the
reference pass over one batch, which ours pays once per record per stage (the precompute): the
"ours + precompute" ratio is the one-epoch worst case.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from transformers import AutoModelForImageTextToText, AutoProcessor

from sherlock.data.prompts import load_prompt
from sherlock.perturbation.recipes import PerturbationConfig
from sherlock.preference.encoding import collate_sequences, encode_example, sequence_log_probs
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
    """The sub-batch of the given sequence rows (Qwen2-VL: pixel rows follow image_grid_thw)."""
    index = torch.tensor(rows)
    out = {k: v[index] for k, v in batch.items() if k not in ("pixel_values", "image_grid_thw")}
    if "image_grid_thw" in batch:
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


def ours_step(model, optimiser, batch, records, ref_table, beta_dpo, beta_sc) -> float:
    optimiser.zero_grad()
    policy_logps, _ = batch_log_probs(model, batch)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="results/models/sft")
    parser.add_argument("--prefs", default="results/data/offline_prefs.json")
    parser.add_argument("--batch", type=int, default=4, help="records per step")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    processor = AutoProcessor.from_pretrained(args.model)
    base = AutoModelForImageTextToText.from_pretrained(args.model, dtype=dtype).to(device)
    ours_model, seed_model = base, copy.deepcopy(base)
    reference_model = copy.deepcopy(base).eval().requires_grad_(False)
    # dropout off in all three, so both runs see the same function (the trainer does the same)
    ours_model.eval()
    seed_model.eval()
    ours_opt = torch.optim.AdamW(ours_model.parameters(), lr=args.lr)
    seed_opt = torch.optim.AdamW(seed_model.parameters(), lr=args.lr)

    examples = load_preferences(args.prefs)
    needed = (args.warmup + args.rounds) * args.batch
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
    for n in range(args.warmup + args.rounds):
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

    times: dict[str, list[float]] = {"ours": [], "seed": [], "reference pass": []}
    gaps = []
    for n, (ours_batch, seed_batch, beta_dpo, beta_sc) in enumerate(batches):
        sync()
        start = time.perf_counter()
        with torch.no_grad():  # what the precompute costs for this batch, once per stage
            ref_table, _ = batch_log_probs(reference_model, ours_batch)
        sync()
        ref_time = time.perf_counter() - start
        order = ("ours", "seed") if n % 2 == 0 else ("seed", "ours")
        losses = {}
        for who in order:
            sync()
            start = time.perf_counter()
            if who == "ours":
                losses[who] = ours_step(
                    ours_model, ours_opt, ours_batch, args.batch, ref_table, beta_dpo, beta_sc
                )
            else:
                losses[who] = seed_step(
                    seed_model, reference_model, seed_opt, seed_batch, args.batch, beta_dpo, beta_sc
                )
            sync()
            if n >= args.warmup:
                times[who].append(time.perf_counter() - start)
        if n >= args.warmup:
            times["reference pass"].append(ref_time)
        gaps.append(abs(losses["ours"] - losses["seed"]) / max(abs(losses["seed"]), 1e-12))
        print(f"round {n}: loss ours {losses['ours']:.6f} seed {losses['seed']:.6f}")

    tokens = int(batches[0][1]["attention_mask"].sum())
    distinct = int(batches[0][0]["input_ids"].shape[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"\nmodel {Path(args.model)} on {device} ({args.dtype}), {args.batch} records "
        f"(= {10 * args.batch} sequences, {tokens} tokens in round 0; {distinct} distinct) per "
        "step, "
        f"{args.rounds} timed rounds after {args.warmup} warm-up"
    )
    for key, value in med.items():
        samples = [round(t * 1000) for t in times[key]]
        print(f"  median {key:15s} {value * 1000:9.1f} ms   samples {samples}")
    with_precompute = med["ours"] + med["reference pass"]
    print(f"  seed / ours                {med['seed'] / med['ours']:.2f}x")
    print(f"  seed / (ours + precompute) {med['seed'] / with_precompute:.2f}x")
    print(f"  largest relative loss gap  {max(gaps):.2e}")


if __name__ == "__main__":
    main()
