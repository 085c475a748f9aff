"""Peak GPU memory and wall time of the one-GPU preset, ESTIMATED (no GPU has run it).

    .venv/bin/python benchmarks/one_gpu_estimate.py    # prints the tables and writes
                                                       # benchmarks/results/one_gpu_estimate.json

The preset's own values (split sizes, batch, LoRA rank, cutoff, answer cap) are read from
config/presets/qwen25vl_3b_1gpu.yaml; the model's parameter counts, and the LoRA parameters on
the layers the preset adapts, are counted exactly on Qwen2.5-VL-3B-Instruct's architecture
built on the meta device (no weights, no download) with the workflow's own adapter code. The
rest are stated inputs (options below): token counts of a record, the card's throughput.

Memory of one micro-batch (bytes):
  weights        2 · P                         (bf16, vision tower included)
  LoRA           16 · P_lora                   (fp32 parameter, gradient, Adam's two moments)
  checkpoints    2 · L · T · h                 (each layer's input, bf16, gradient checkpointing)
  LM head        Stage I (LLaMA-Factory, transformers' loss over every position):
                   10 · N · V                  (bf16 logits, their fp32 copy, fp32 log-softmax)
                 preference stages (only target positions reach the softmax):
                   max(2 · K · V + 6 · N_t · V, 12 · N_t · V)
                   (bf16 logits from the first target position on, their gather and fp32 copy;
                    in the backward pass the saved fp32 copy and two fp32 gradients)
  recompute      2 · T · (3 · i + 4 · h)       (one layer's temporaries in the backward pass)
  allowance      1.5 GiB                       (CUDA context, allocator fragmentation)
  peak = weights + LoRA + checkpoints + max(LM head, recompute) + allowance
with L layers, hidden size h, MLP size i, vocabulary V, T tokens in the micro-batch, N its
positions, N_t its target tokens and K the positions kept per row times the rows.

Time: trainings at 6 · P_LM FLOPs per token (forward; backward through the frozen weights to
the activations only; the checkpoints' recomputation) plus attention (12 · L · h · tokens of the
row per token) and the frozen vision tower's forward per image (2 · P_vision · patches); the
reference pass at a third of that; divided by peak × utilisation. Generation: generated tokens /
decode rate + prompt tokens / prefill rate + a start-up per job.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "config" / "presets" / "qwen25vl_3b_1gpu.yaml"
RESULT = ROOT / "benchmarks" / "results" / "one_gpu_estimate.json"
GIB = 2**30
# Qwen/Qwen2.5-VL-3B-Instruct's config.json (the values that size the model).
QWEN25VL_3B = {
    "text_config": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 2048,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
    },
    "tie_word_embeddings": True,
}


def count_parameters(preset: dict) -> dict[str, int]:
    """Parameters of the model and of the preset's adapters (the preference stages' choice of
    layers, which is Stage I's: sherlock.preference.lora)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from sherlock.preference.lora import LoraSettings, add_adapter, trainable_count

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**QWEN25VL_3B))
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    total = sum(p.numel() for p in model.parameters())
    keys = {**preset["preference"]["common"]}
    settings = LoraSettings(
        keys["lora_rank"], keys["lora_alpha"], keys["lora_dropout"], keys["lora_target"]
    )
    adapted = add_adapter(
        model,
        settings,
        vision_tower=keys["freeze_vision_tower"],
        projector=keys["freeze_multi_modal_projector"],
        language_model=keys["freeze_language_model"],
    )
    return {"total": total, "vision": vision, "language": total - vision,
            "lora": trainable_count(adapted)}


def rows(tokens: dict, answer: int) -> dict[str, dict]:
    """Rows of one micro-batch per stage: (context, target) token counts."""
    context = tokens["image"] + tokens["question"]
    prefix = int(tokens["prefix_fraction"] * answer)
    refine = context + tokens["refine"] + answer + prefix  # REFINE(x, y) with a prefix pre-filled
    direct = [(context, answer)] * 2  # direct_w, direct_l
    return {
        "r0": {"rows": [(context, answer)]},
        "sherlock_sft": {"rows": [(context + tokens["refine"] + answer, answer)]},  # REFINE row
        "offline": {"rows": direct + [(refine, answer - prefix)] * 4},  # p_w = p_l: 6 distinct
        "online": {"rows": direct + [(refine, answer - prefix)] * 8},  # 10 distinct
    }


def memory(stage: str, batch: list[tuple[int, int]], model: dict, params: dict) -> dict:
    """The terms of the module docstring, in GiB, for one micro-batch."""
    h, i, layers, vocab = model["h"], model["i"], model["layers"], model["vocab"]
    tokens = sum(c + t for c, t in batch)
    terms = {
        "weights": 2 * params["total"],
        "lora": 16 * params["lora"],
        "checkpoints": 2 * layers * tokens * h,
        "recompute": 2 * tokens * (3 * i + 4 * h),
    }
    if stage in ("r0", "sherlock_sft"):
        terms["lm_head"] = 10 * tokens * vocab
    else:
        longest = max(c + t for c, t in batch)
        kept = len(batch) * (longest - min(c for c, _ in batch) + 1)
        targets = sum(t for _, t in batch)
        terms["lm_head"] = max(2 * kept * vocab + 6 * targets * vocab, 12 * targets * vocab)
    terms["allowance"] = 1.5 * GIB
    peak = (
        terms["weights"] + terms["lora"] + terms["checkpoints"]
        + max(terms["lm_head"], terms["recompute"]) + terms["allowance"]
    )
    return {"tokens": tokens, **{k: round(v / GIB, 2) for k, v in terms.items()},
            "peak": round(peak / GIB, 1)}


def hours(preset: dict, tokens: dict, params: dict, model: dict, card: dict) -> dict[str, float]:
    """Wall time per step of the preset, in hours (module docstring)."""
    splits, online = preset["splits"], preset["online"]
    sft, pref = preset["sft"], preset["preference"]
    answer = tokens["answer"]
    flops = card["tflops"] * 1e12 * card["utilisation"]
    patches = 4 * tokens["image"]  # 2 × 2 patches merged into each image token
    vision_pass = 2 * params["vision"] * patches

    def train(records: float, batch: list[tuple[int, int]], epochs: float, reference: bool):
        per_token = 6 * params["language"]
        text = 0.0
        for context, target in batch:
            length = context + target
            text += length * (per_token + 12 * model["layers"] * model["h"] * length)
        # one image per row or record (shared by its sequences), through the frozen tower once
        total = records * epochs * (text + vision_pass)
        if reference:  # the reference table: one forward pass, before training
            total += records * (text / 3 + vision_pass)
        return total / flops / 3600

    def generate(requests: float, new: float, prompt: float, jobs: int = 1) -> float:
        return (requests * new / card["decode"] + requests * prompt / card["prefill"]
                + jobs * card["startup_s"]) / 3600

    shapes = rows(tokens, answer)
    kept = online["target_pairs"]
    context = tokens["image"] + tokens["question"]
    refine_prompt = context + tokens["refine"] + answer
    continuation = answer * (1 - tokens["prefix_fraction"])
    per_iteration = {
        "candidates": generate(splits["pool"], 4 * answer, 4 * refine_prompt),
        "chosen (judge)": generate(3 * splits["pool"], 2, 300),
        "rejected": generate(kept, continuation, context + answer),
        "train": train(kept, shapes["online"]["rows"],
                       pref["online"]["num_train_epochs"], True),
        "merge": card["merge_s"] / 3600,
    }
    steps = {
        "r0": train(splits["d_a"], shapes["r0"]["rows"], sft["r0"]["num_train_epochs"], False),
        "merge r0": card["merge_s"] / 3600,
        "sherlock_sft_data": generate(splits["d_b"], answer, context),
        # half the rows direct, half REFINE
        "sft": 0.5 * train(2 * splits["d_b"], shapes["r0"]["rows"],
                           sft["sherlock_sft"]["num_train_epochs"], False)
        + 0.5 * train(2 * splits["d_b"], shapes["sherlock_sft"]["rows"],
                      sft["sherlock_sft"]["num_train_epochs"], False),
        "merge sft": card["merge_s"] / 3600,
        "offline_prefs": generate(splits["d_a"], continuation, context + answer),
        "offline": train(splits["d_a"], shapes["offline"]["rows"],
                         pref["offline"]["num_train_epochs"], True),
        "merge offline": card["merge_s"] / 3600,
    }
    for k in range(1, online["iterations"] + 1):
        for name, value in per_iteration.items():
            steps[f"iter{k} {name}"] = value
    return {name: round(value, 2) for name, value in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=str(PRESET))
    parser.add_argument("--answer", type=int, default=500, help="tokens of a typical answer")
    parser.add_argument("--question", type=int, default=60, help="question + chat template")
    parser.add_argument("--refine", type=int, default=290, help="the refine prompt's own tokens")
    parser.add_argument("--prefix-fraction", type=float, default=0.22,
                        help="the pre-filled prefix, as a share of the answer (paper recipe)")
    parser.add_argument("--tflops", type=float, default=125.0, help="the card's bf16 peak")
    parser.add_argument("--utilisation", type=float, default=0.30)
    parser.add_argument("--decode", type=float, default=1500.0, help="vLLM tokens/s generated")
    parser.add_argument("--prefill", type=float, default=10000.0, help="vLLM prompt tokens/s")
    parser.add_argument("--startup-s", type=float, default=120.0, help="a vLLM job's start")
    parser.add_argument("--merge-s", type=float, default=180.0, help="a merge job (CPU)")
    parser.add_argument("--cap", type=int, default=None,
                        help="answer tokens of the bound (default: generation.max_new_tokens)")
    parser.add_argument("--output", default=str(RESULT))
    args = parser.parse_args()

    preset = yaml.safe_load(Path(args.preset).read_text(encoding="utf-8"))
    params = count_parameters(preset)
    text = QWEN25VL_3B["text_config"]
    model = {"h": text["hidden_size"], "i": text["intermediate_size"],
             "layers": text["num_hidden_layers"], "vocab": text["vocab_size"]}
    image_tokens = preset["sft"]["common"]["image_max_pixels"] // (28 * 28)
    tokens = {"image": image_tokens, "question": args.question, "refine": args.refine,
              "answer": args.answer, "prefix_fraction": args.prefix_fraction}
    cap = args.cap or preset["generation"]["max_new_tokens"]
    table = {}
    for label, answer in (("typical", args.answer), ("answers at the cap", cap)):
        shapes = rows(tokens, answer)
        table[label] = {stage: memory(stage, spec["rows"], model, params)
                        for stage, spec in shapes.items()}
    card = {"tflops": args.tflops, "utilisation": args.utilisation, "decode": args.decode,
            "prefill": args.prefill, "startup_s": args.startup_s, "merge_s": args.merge_s}
    steps = hours(preset, tokens, params, model, card)
    result = {
        "estimate": "not measured: no GPU has run the preset (sherlock-gpu-check will measure)",
        "preset": str(args.preset).removeprefix(f"{ROOT}/"),
        "parameters": params,
        "tokens": {**tokens, "answer_cap": cap},
        "card": card,
        "memory_gib": table,
        "hours": steps,
        "total_hours": round(sum(steps.values()), 1),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"parameters: {params}")
    for label, stages in table.items():
        print(f"\npeak GPU memory, GiB ({label}):")
        print(f"  {'stage':<14}{'tokens':>8}{'weights':>9}{'lora':>6}{'ckpt':>6}"
              f"{'head':>7}{'recomp':>8}{'peak':>7}")
        for stage, m in stages.items():
            print(f"  {stage:<14}{m['tokens']:>8}{m['weights']:>9}{m['lora']:>6}"
                  f"{m['checkpoints']:>6}{m['lm_head']:>7}{m['recompute']:>8}{m['peak']:>7}")
    print("\nhours:")
    for name, value in steps.items():
        print(f"  {name:<22}{value:>6}")
    print(f"  {'total':<22}{result['total_hours']:>6}")


if __name__ == "__main__":
    main()
