"""The reference table and the length check are done once per run, shared by the processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from test_pref_training import make_examples
from transformers import AutoProcessor

from sherlock.data.prompts import load_prompt
from sherlock.preference.lengths import longest_context
from sherlock.preference.records import preference_row
from sherlock.preference.trainer import process_share

WORKER = Path(__file__).with_name("reference_table_worker.py")


def test_shares_cover_every_record_once_and_are_equally_long() -> None:
    assert process_share(6, 0, 2) == [0, 2, 4] and process_share(6, 1, 2) == [1, 3, 5]
    # uneven: the short share repeats its last record, so both run as many batches
    assert process_share(5, 0, 2) == [0, 2, 4] and process_share(5, 1, 2) == [1, 3, 3]
    assert process_share(1, 1, 2) == [0]  # nothing of its own: it still steps with the others
    shares = [process_share(10, rank, 4) for rank in range(4)]
    assert {len(share) for share in shares} == {3}
    assert set().union(*map(set, shares)) == set(range(10))


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_processes_build_the_one_process_table_each_doing_half(
    tiny_model_dir: Path, tmp_path: Path, records: list[dict], synthetic_dir: Path
) -> None:
    examples = make_examples(records, synthetic_dir, 6)
    prefs = tmp_path / "prefs.json"
    prefs.write_text(json.dumps([preference_row(ex) for ex in examples]))
    # a cutoff between the records' longest contexts: some fit, some do not
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    longest = [longest_context(processor, ex, load_prompt("refine")).tokens for ex in examples]
    cutoff = sorted(longest)[len(longest) // 2]
    too_long = [ex.id for ex, n in zip(examples, longest, strict=True) if n >= cutoff]
    assert 0 < len(too_long) < len(examples)

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    base = [str(WORKER), str(tiny_model_dir), str(prefs)]
    _run([sys.executable, *base, str(one), str(cutoff)])
    torchrun = Path(sys.executable).parent / "torchrun"
    _run([str(torchrun), "--standalone", "--nproc_per_node=2", *base, str(two), str(cutoff)])

    alone = load_file(str(one / "table.safetensors"))
    shared = load_file(str(two / "table.safetensors"))
    assert alone["table"].shape == (6, 10) and bool((alone["table"] < 0).all())
    torch.testing.assert_close(shared["table"], alone["table"], rtol=1e-5, atol=1e-5)
    # five records over two processes: 3 + 2 (+ 1 repeat), the same table as one process's
    assert alone["odd"].shape == (5, 10)
    torch.testing.assert_close(shared["odd"], alone["odd"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone["odd"], alone["table"][:5], rtol=1e-5, atol=1e-5)
    assert json.loads((one / "records0.json").read_text()) == list(range(6))
    assert json.loads((two / "records0.json").read_text()) == [0, 2, 4]  # half each
    assert json.loads((two / "records1.json").read_text()) == [1, 3, 5]
    # the length check: every process names every offender, its own and the other's
    messages = [(two / f"error{rank}.txt").read_text() for rank in (0, 1)]
    assert messages[0] == messages[1] == (one / "error0.txt").read_text()
    assert f"{len(too_long)} of 6 records cannot fit cutoff_len {cutoff}" in messages[0]
    for record_id in too_long:
        assert f"\n  {record_id}: the " in messages[0]
    for ex in examples:
        if ex.id not in too_long:
            assert f"\n  {ex.id}: " not in messages[0]
