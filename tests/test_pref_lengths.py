"""Over-long preference records are caught where the pairs are built: left out, counted, named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_pref_training import make_examples
from transformers import AutoProcessor

from sherlock.data.prompts import load_prompt
from sherlock.data.records import strip_image_token
from sherlock.data.sharegpt import sft_row
from sherlock.preference.encoding import encode_sequences, record_image, sequence_specs
from sherlock.preference.lengths import longest_context
from sherlock.preference.losses import SEQUENCE_NAMES
from sherlock.preference.records import load_preferences

ROOT = Path(__file__).resolve().parents[1]
REFINE = load_prompt("refine")


def test_the_longest_context_is_where_the_trainer_stops(
    tiny_model_dir: Path, records: list[dict], synthetic_dir: Path
) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    example = make_examples(records, synthetic_dir, 2)[1]
    longest = longest_context(processor, example, REFINE)
    assert longest.name in SEQUENCE_NAMES and longest.name != "direct_w"  # a REFINE context
    specs = sequence_specs(example, REFINE)
    image = record_image(example)
    every = [specs[name] for name in SEQUENCE_NAMES]
    encode_sequences(processor, image, every, cutoff_len=longest.tokens + 1)  # fits
    assert longest.fits(longest.tokens + 1) and not longest.fits(longest.tokens)
    with pytest.raises(ValueError, match="more than cutoff_len"):
        encode_sequences(processor, image, every, cutoff_len=longest.tokens)


def test_the_pair_builder_leaves_out_and_names_what_cannot_fit(
    tiny_model_dir: Path, tmp_path: Path, records: list[dict], synthetic_dir: Path
) -> None:
    rows = [
        sft_row(
            r["id"],
            strip_image_token(r["conversations"][0]["value"]),
            r["conversations"][1]["value"],
            str(synthetic_dir / r["image"]),
        )
        for r in records[:8]
    ]
    (tmp_path / "d_a.json").write_text(json.dumps(rows))
    perturbation = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["perturbation"]

    def build(name: str, *extra: str) -> Path:
        command = [sys.executable, str(ROOT / "workflow_scripts" / "build_offline_prefs.py")]
        command += ["--model", str(tiny_model_dir), "--data", str(tmp_path / "d_a.json")]
        command += ["--batch-size", "4", "--max-new-tokens", "8", "--temperature", "0"]
        command += ["--top-p", "1", "--seed", "1", "--perturbation", json.dumps(perturbation)]
        command += ["--image-dir", str(tmp_path / name), "--image-max-pixels", "3136"]
        command += ["--output", str(tmp_path / f"{name}.json")]
        command += ["--summary", str(tmp_path / f"{name}.yaml"), *extra]
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        return tmp_path / f"{name}.json"

    everything = load_preferences(build("all"))
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    longest = {ex.id: longest_context(processor, ex, REFINE, (1, 3136)) for ex in everything}
    cutoff = sorted(n.tokens for n in longest.values())[len(longest) // 2]
    too_long = sorted(i for i, n in longest.items() if n.tokens >= cutoff)
    assert 0 < len(too_long) < len(everything)

    kept = load_preferences(build("cut", "--cutoff-len", str(cutoff)))
    assert sorted(ex.id for ex in kept) == sorted(set(longest) - set(too_long))
    summary = yaml.safe_load((tmp_path / "cut.yaml").read_text())
    assert summary["records"] == len(kept)
    left_out = summary["left_out_too_long"]
    assert left_out["count"] == len(too_long)
    named = sorted(line.split(":")[0] for line in left_out["records"])
    assert named == too_long
    assert all(f"cutoff_len is {cutoff}" in line for line in left_out["records"])
