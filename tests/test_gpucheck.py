"""sherlock-gpu-check: the parameter and FLOP model against hand counts and the models themselves,
the price's arithmetic against a hand-computed example, the dry run's estimate, and ``--smoke``
on the embedded default (the measuring code at toy size on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sherlock.gpucheck.architectures import (
    CONFIGS,
    SHIPPED,
    ArchitectureUnknown,
    model_config,
    shape_of,
    tiny_config,
)
from sherlock.gpucheck.flops import (
    Training,
    lora_parameters,
    parameters,
    text_forward_flops,
    trainable_parameters,
    training_flops,
    vision_forward_flops,
)
from sherlock.gpucheck.hardware import Accelerator, accelerator
from sherlock.gpucheck.price import Rates, gpu_hours, is_dry_run, price
from sherlock.gpucheck.workload import Sequence, Stage, Tokens, stages

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "presets" / "paper_llama32v.yaml"


def run_config(*presets: Path) -> dict:
    from sherlock.gpucheck.cli import overlay

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for preset in presets:
        config = overlay(config, yaml.safe_load(preset.read_text()))
    return config


# A decoder small enough to count by hand: width 4, 2 layers, 2 query heads and 1 key/value
# head of width 2, MLP width 8, vocabulary 10, untied, no biases.
HAND = shape_of(
    {
        "model_type": "llama",
        "vocab_size": 10,
        "hidden_size": 4,
        "intermediate_size": 8,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
    }
)


def test_parameters_of_a_hand_counted_decoder():
    # per layer: q 4·4 + k 4·2 + v 4·2 + o 4·4 = 48, MLP 3·4·8 = 96, two norms 8 → 152;
    # embeddings 10·4 = 40, final norm 4, LM head 10·4 = 40 → 40 + 2·152 + 4 + 40 = 388
    assert parameters(HAND).total == 388
    # LoRA rank 2 on q and v: 2·(4+4) + 2·(4+2) = 28 per layer, 2 layers
    assert lora_parameters(HAND.text, 2, "q_proj,v_proj") == 56


def test_forward_flops_of_a_hand_counted_decoder():
    # 3 tokens, 2 through the LM head. Per layer: 2·(48 + 96)·3 = 864 for the weights,
    # attention 4·3·3·(2 heads · 2) = 144 → 1008; two layers 2016; LM head 2·4·10·2 = 160;
    # rotary angles 2·(2/2)·3 = 6.
    assert text_forward_flops(HAND, tokens=3, targets=2) == 2182
    full = Training()
    assert training_flops(HAND, full, 3, 2, images=1, max_pixels=0) == 3 * 2182
    frozen = Training(freeze_language=True, freeze_vision=True, freeze_projector=True)
    assert training_flops(HAND, frozen, 3, 2, images=1, max_pixels=0) == 2182
    # LoRA r=2 on q and v: adapters (56 weights) 2·56·3 = 336 forward, twice that backward; the
    # frozen weights pass gradients back (one forward's worth)
    lora = Training(lora_rank=2, lora_target="q_proj,v_proj")
    assert training_flops(HAND, lora, 3, 2, images=1, max_pixels=0) == 2 * 2182 + 3 * 336
    assert trainable_parameters(HAND, lora) == 56


def test_the_11b_vision_side_and_a_sequence_by_hand():
    shape = shape_of(model_config("meta-llama/Llama-3.2-11B-Vision-Instruct")[0])
    # 4 tiles × (40² patches + 1) = 6404 positions, padded to 4 × 1608 = 6432 in the encoder;
    # 40 layers of 2·(4·1280² + 2·1280·5120)·6432 + 4·6432²·1280; patch conv 2·3·14²·1280·6400;
    # projector 2·7680·4096·6404; the padding mask's outer product 2·6432²
    tokens = 4 * 1608
    layer = 2 * (4 * 1280**2 + 2 * 1280 * 5120) * tokens + 4 * tokens**2 * 1280
    conv, mask = 2 * 3 * 14**2 * 1280 * 6400, 2 * tokens**2
    expected = 40 * layer + conv + mask + 2 * 7680 * 4096 * 6404
    assert vision_forward_flops(shape, 589824) == expected
    assert round(expected / 1e12, 1) == 19.0  # benchmarks/vision_heavy.py's FLOP counter: 19.0
    assert round(text_forward_flops(shape, 768, 300) / 1e12, 1) == 15.4  # and 15.4 there


@pytest.mark.parametrize("hub_id", sorted(SHIPPED))
def test_parameter_counts_equal_the_models_built_from_the_shipped_configs(hub_id):
    torch = pytest.importorskip("torch")
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM, AutoModelForImageTextToText

    config = json.loads((CONFIGS / SHIPPED[hub_id]).read_text())
    settings = {k: v for k, v in config.items() if k != "model_type"}
    auto = AutoModelForImageTextToText if "vision_config" in config else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(CONFIG_MAPPING[config["model_type"]](**settings))
    assert parameters(shape_of(config)).total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("architecture", ["qwen2_vl", "qwen2_5_vl", "mllama"])
def test_flops_equal_torchs_counter_on_the_tiny_models(architecture, tiny_vlm, image_size):
    """The forward FLOPs of a real batch through each tiny family, counted by torch."""
    torch = pytest.importorskip("torch")
    from PIL import Image
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from sherlock.data.chat import encode_prompts, render_prompt

    folder = tiny_vlm(architecture)
    model = AutoModelForImageTextToText.from_pretrained(folder, attn_implementation="eager")
    processor = AutoProcessor.from_pretrained(folder)
    image = Image.new("RGB", (image_size, image_size), (200, 40, 40))
    prompt = render_prompt(processor, "How many shapes are there?")
    inputs = encode_prompts(processor, [prompt], [image], return_tensors="pt")
    tokens, targets = inputs["input_ids"].shape[1], 5
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs, use_cache=False, logits_to_keep=targets)
    shape = shape_of(json.loads((folder / "config.json").read_text()))
    # the config the price reads for tiny_model keys is the one sherlock.embedded builds
    keys = {
        "architecture": architecture,
        "vocab_size": len(processor.tokenizer),
        "hidden_size": 64,
        "num_layers": 2,
        "num_heads": 4,
        "vision_depth": 2,
        "vision_embed_dim": 32,
    }
    assert parameters(shape_of(tiny_config(keys, image_size))).total == sum(
        p.numel() for p in model.parameters()
    )
    expected = text_forward_flops(shape, tokens, targets) + vision_forward_flops(
        shape, image_size * image_size
    )
    assert counter.get_total_flops() == expected


def test_an_unknown_model_is_named():
    with pytest.raises(ArchitectureUnknown, match="nowhere/model"):
        model_config("nowhere/model")


def test_training_state_memory_by_hand():
    from sherlock.gpucheck.flops import state_memory

    # 10B weights, 9B trainable, 8 GPUs, ZeRO-3 with the optimizer offloaded: bf16 weights
    # 20 GB / 8, bf16 gradients 18 GB / 8 on each GPU; AdamW 12 B × 9B / 8 on the CPU
    state = state_memory(10_000_000_000, 9_000_000_000, 8, 3, offload_optimizer=True)
    assert (state.weights, state.gradients, state.optimizer) == (2.5e9, 2.25e9, 13.5e9)
    assert state.on_gpu == 4.75e9
    # LoRA: 56 trainable of 388 on one GPU without DeepSpeed: 776 + 112 + 672 bytes
    assert state_memory(388, 56).on_gpu == 776 + 112 + 672


def test_gpu_hours_by_hand():
    # 1000 records × 3 epochs × 2.4 s = 7200 GPU-seconds = 2 GPU-hours
    assert gpu_hours(1000, 3, 2.4) == pytest.approx(2.0)


def test_price_rows_by_hand():
    """An SFT stage of the hand decoder on a made-up GPU of 1 TFLOP/s at 50 %: one record is
    one sequence of 3 tokens (2 targets), 3·2182 = 6546 FLOPs, so 6546 / 0.5e12 s."""
    gpu = Accelerator("test", 1.0, 1.0, 1)
    stage = Stage(
        "sft",
        "sft",
        items=1_000_000,
        item="record",
        epochs=2,
        sequences=[Sequence(3, 2)],
        training=Training(),
    )
    (row,) = price(HAND, [stage], Rates(gpu, mfu_sft=0.5), max_pixels=0)
    assert row.flops_per_item == 6546
    assert row.seconds_per_item == pytest.approx(6546 / 0.5e12)
    assert row.gpu_hours == pytest.approx(1_000_000 * 2 * 6546 / 0.5e12 / 3600)


def test_the_paper_preset_stages_count_its_records():
    config = run_config(PAPER)
    shape = shape_of(model_config(config["base_model"]["path"])[0])
    work = {s.name: s for s in stages(config, shape, Tokens(), count_files_up_to=0)}
    assert work["Stage I   R0 (SFT on D_A)"].items == 10_000
    assert work["Stage I   Sherlock-SFT"].items == 20_000
    assert work["Stage I   Sherlock-SFT"].epochs == 3
    assert work["Stage II  Offline (Sherlock)"].items == 10_000
    # 10k pool items at an assumed 50 % acceptance keep the 5k target
    assert work["Stage III iter2 (Sherlock)"].items == 5_000
    assert work["Stage III iter1 candidates (y0 + 3 corrections)"].items == 10_000
    assert (
        sum(r.count for r in work["Stage III iter1 candidates (y0 + 3 corrections)"].requests) == 4
    )
    assert work["Stage II  Offline (Sherlock)"].training.freeze_vision
    zero = work["Stage II  Offline (Sherlock)"].zero  # config/deepspeed/ds_z3_offload.json
    assert (zero.stage, zero.offload_optimizer, zero.offload_parameters) == (3, True, True)


def test_dry_run_flags():
    assert is_dry_run(["snakemake", "-n", "iter2"])
    assert is_dry_run(["snakemake", "-np"])
    assert is_dry_run(["snakemake", "--dry-run"])
    assert not is_dry_run(["snakemake", "--cores", "all"])
    assert not is_dry_run(["snakemake", "-c1", "--dag"])


def test_accelerators_by_name():
    assert accelerator("NVIDIA H200").bf16_tflops == 989
    assert accelerator("NVIDIA A100-SXM4-40GB").memory_gib == 40
    assert accelerator("NVIDIA H100 PCIe").bf16_tflops == 756
    assert accelerator("a CPU") is None


def test_a_dry_run_prints_the_estimate(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(ROOT / "Snakefile"),
            "-n",
            "sft",
            "--quiet",
            "rules",
            "--directory",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Estimated cost:" in result.stderr
    assert "Stage II  Offline (Sherlock)" in result.stderr


def test_smoke_on_the_embedded_default(tmp_path, capsys, monkeypatch):
    """The whole flow at toy size on the CPU: verdicts, measurements, a price (in this
    process: torch and transformers are loaded once for the suite)."""
    from sherlock.gpucheck.cli import main

    monkeypatch.chdir(tmp_path)
    output = tmp_path / "figures.json"
    assert main(["--smoke", "--output", str(output)]) == 0
    text = capsys.readouterr().out
    for line in (
        "Sherlock step, vision shared",
        "Sherlock step, vision per sequence",
        "SFT step (causal-LM loss)",
        "generation, one per call",
        "Price (estimate)",
    ):
        assert line in text
    figures = json.loads(output.read_text())
    timings = {t["name"]: t for t in figures["measured"]["timings"]}
    assert timings["Sherlock step, vision shared"]["seconds"] > 0
    assert timings["generation, batch 4"]["tokens"] > 0
    price_rows = figures["price"]["stages"]
    assert figures["price"]["label"] == "estimate"
    assert figures["price"]["total_gpu_hours"] == pytest.approx(
        sum(row["gpu_hours"] for row in price_rows)
    )
