"""One image size for every stage: the vision inputs of one record are the same whether Stage I
(LLaMA-Factory), a generating job (transformers backend) or the preference trainer encodes it,
all at sft.common's pixel limits."""

from __future__ import annotations

from pathlib import Path

import torch
from llamafactory.data.template import get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments, ModelArguments
from llamafactory.model import load_tokenizer
from PIL import Image
from transformers import AutoProcessor

from sherlock.data.prompts import load_prompt
from sherlock.generation import GenerationRequest
from sherlock.generation.hf import TransformersBackend
from sherlock.preference.encoding import encode_example
from sherlock.preference.records import PreferenceExample

# The embedded default's sft.common limits: 56 × 56 pixels.
PIXELS = (3136, 3136)


def _record(tmp_path: Path) -> PreferenceExample:
    """A record whose image is larger than the limits (so every path has to scale it)."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (100, 140, 3), generator=generator, dtype=torch.uint8)
    path = tmp_path / "large.png"
    Image.fromarray(pixels.numpy()).save(path)
    answer = "<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION><REASONING>r</REASONING><CONCLUSION>1"
    return PreferenceExample(
        id="large", image=str(path), question="How many?", chosen=answer + "</CONCLUSION>",
        rejected=answer + "2</CONCLUSION>", prefix="", prefix_l="",
    )  # fmt: skip


def _llamafactory(model_dir: Path, image: Image.Image) -> dict[str, torch.Tensor]:
    """What LLaMA-Factory's SFT collator feeds the model for this image."""
    model_args = ModelArguments(
        model_name_or_path=str(model_dir), image_min_pixels=PIXELS[0], image_max_pixels=PIXELS[1]
    )
    loaded = load_tokenizer(model_args)
    data_args = DataArguments(template="qwen2_vl")
    template = get_template_and_fix_tokenizer(loaded["tokenizer"], data_args)
    return template.mm_plugin.get_mm_inputs(
        [image], [], [], [1], [0], [0], [[0]], loaded["processor"]
    )


def test_one_record_has_the_same_vision_inputs_in_every_stage(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    record = _record(tmp_path)
    with Image.open(record.image) as opened:
        stage_one = _llamafactory(tiny_model_dir, opened.convert("RGB"))

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    sequences = encode_example(processor, record, load_prompt("refine"), pixels=PIXELS)
    backend = TransformersBackend(
        str(tiny_model_dir),
        device="cpu",
        dtype="float32",
        progress=False,
        image_min_pixels=PIXELS[0],
        image_max_pixels=PIXELS[1],
    )
    request = GenerationRequest(key="large", image=record.image, user_text=record.question)
    generation = backend._encode([request])

    assert stage_one["image_grid_thw"].tolist() == [[1, 4, 4]]  # scaled: 4 × 4 patches
    for sequence in sequences:  # all ten sequences carry the same image
        for key in ("pixel_values", "image_grid_thw"):
            assert torch.equal(sequence["vision"][key], stage_one[key]), key
    for key in ("pixel_values", "image_grid_thw"):
        assert torch.equal(generation[key], stage_one[key]), key
    # Without the limits the trainer would see another picture: the check above can fail.
    unscaled = encode_example(processor, record, load_prompt("refine"))[0]["vision"]
    assert unscaled["image_grid_thw"].tolist() != [[1, 4, 4]]


def test_the_preference_run_file_carries_stage_one_limits(tmp_path: Path) -> None:
    """What the offline_config / iter_config rules render reaches the trainer's dataset."""
    import json
    import subprocess
    import sys

    import yaml
    from defaults import DEFAULT_CONFIG

    from sherlock.preference.run import RUN_KEYS, image_pixels

    root = Path(__file__).resolve().parents[1]
    run = tmp_path / "train.yaml"
    command = [sys.executable, str(root / "workflow_scripts" / "render_sherlock_run.py")]
    command += ["--model", "m", "--data", "d.json", "--hparams", json.dumps({"cutoff_len": 64})]
    command += ["--perturbation", json.dumps(DEFAULT_CONFIG["perturbation"]), "--seed", "1"]
    command += ["--output-dir", "out", "--run-file", str(run)]
    command += ["--checkpointing", json.dumps(DEFAULT_CONFIG["checkpointing"])]
    command += ["--image-min-pixels", str(PIXELS[0]), "--image-max-pixels", str(PIXELS[1])]
    subprocess.run(command, check=True, capture_output=True)
    rendered = yaml.safe_load(run.read_text())
    assert "image_min_pixels" in RUN_KEYS and "image_max_pixels" in RUN_KEYS
    assert image_pixels(rendered) == PIXELS
    assert image_pixels({}) is None  # a run file of another tool: images as stored
    assert "image_resample" not in rendered  # bicubic, the default, is not written
    nearest = {**rendered, "image_resample": "nearest"}  # images.resample: nearest
    assert "image_resample" in RUN_KEYS and image_pixels(nearest) == (*PIXELS, "nearest")


def test_nearest_filter_in_every_stage(tiny_model_dir: Path, tmp_path: Path) -> None:
    """images.resample: nearest (the authors' fork). Our resizes pick source pixels; Stage I, which
    LLaMA-Factory scales bicubic, trains on copies we scaled, which it leaves as they are."""
    import numpy as np

    from sherlock.data.images import fit_pixels, pixel_limits
    from sherlock.data.sharegpt import sft_row
    from sherlock.sft.fitted_images import fit_row_images

    # 4 × 2 pixels with distinct values, halved in area to 2 × 1... by hand: nearest keeps
    # whole source pixels (columns 1 and 3 of row 1 at Pillow's pixel centres); bicubic blends.
    values = np.arange(8 * 3, dtype=np.uint8).reshape(2, 4, 3) * 10
    small = Image.fromarray(values)
    nearest = np.asarray(fit_pixels(small, 1, 2, "nearest"))
    assert nearest.shape == (1, 2, 3)
    assert nearest.tolist() == [[values[1, 1].tolist(), values[1, 3].tolist()]]
    assert np.asarray(fit_pixels(small, 1, 2)).tolist() != nearest.tolist()  # bicubic blends
    assert pixel_limits(1024, 4096) == (1024, 4096) and pixel_limits(None, None) is None
    assert pixel_limits(None, 4096, "nearest") == (1, 4096, "nearest")

    record = _record(tmp_path)  # 140 × 100, larger than the limits
    inside = tmp_path / "inside.png"
    Image.new("RGB", (56, 56), "red").save(inside)
    rows = [
        sft_row("a", "q", "r", record.image),
        sft_row("b", "q", "r", str(inside)),
        sft_row("c", "q", "r", record.image),
    ]
    fitted, counts = fit_row_images(rows, *PIXELS, "nearest", tmp_path / "fitted", tmp_path)
    assert counts == {"images": 2, "scaled_copies": 1}
    assert fitted[0]["images"] == fitted[2]["images"] != rows[0]["images"]  # one copy, reused
    assert fitted[1]["images"] == [str(inside)]  # within the limits: as it is
    with Image.open(fitted[0]["images"][0]) as copy:
        ours = copy.convert("RGB")
    with Image.open(record.image) as opened:
        assert np.array_equal(np.asarray(ours), np.asarray(fit_pixels(opened, *PIXELS, "nearest")))
        stage_one_bicubic = _llamafactory(tiny_model_dir, opened.convert("RGB"))
    stage_one = _llamafactory(tiny_model_dir, ours)  # LLaMA-Factory on our copy
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    sequences = encode_example(
        processor, record, load_prompt("refine"), pixels=(*PIXELS, "nearest")
    )
    backend = TransformersBackend(
        str(tiny_model_dir),
        device="cpu",
        dtype="float32",
        progress=False,
        image_min_pixels=PIXELS[0],
        image_max_pixels=PIXELS[1],
        image_resample="nearest",
    )
    request = GenerationRequest(key="large", image=record.image, user_text=record.question)
    generation = backend._encode([request])
    assert torch.equal(sequences[0]["vision"]["pixel_values"], stage_one["pixel_values"])
    assert torch.equal(generation["pixel_values"], stage_one["pixel_values"])
    assert not torch.equal(stage_one["pixel_values"], stage_one_bicubic["pixel_values"])
