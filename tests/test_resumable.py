"""Faults lose nothing: atomic files, resumable chunked generation, resumable training runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sherlock.generation import GenerationRequest, SamplingParams, load_backend
from sherlock.generation.base import GenerationBackend
from sherlock.generation.resumable import ResumableBackend
from sherlock.runtime import atomic
from sherlock.runtime.resumable_training import (
    FINGERPRINT_FILE,
    finalise,
    last_complete_checkpoint,
    prepare_scratch,
)

SAMPLED = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=10, seed=11)


# -- atomic files ---------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "rows.jsonl"
    atomic.write_jsonl(target, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic.write_jsonl(target, rows())
    assert target.read_text() == '{"a": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_temporary_keeps_the_suffix_and_is_hidden(tmp_path: Path) -> None:
    assert atomic.temporary_sibling(tmp_path / "fig.png").name == ".fig.partial.png"
    atomic.write_json(tmp_path / "sub" / "x.json", {"é": [1]})
    assert json.loads((tmp_path / "sub" / "x.json").read_text("utf-8")) == {"é": [1]}


def test_atomic_directory_appears_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic.atomic_directory(target) as scratch:
        (scratch / "half.bin").write_text("x")
        raise RuntimeError("killed")
    assert not target.exists()
    with atomic.atomic_directory(target) as scratch:
        (scratch / "whole.bin").write_text("y")
    assert [p.name for p in target.iterdir()] == ["whole.bin"]
    assert not (tmp_path / "model.partial").exists()


# -- resumable generation -------------------------------------------------------------------------
class SeededFake(GenerationBackend):
    """Follows the backend contract: batch b of a call samples with seed + b."""

    def __init__(self, batch_size: int, fail_after_calls: int | None = None) -> None:
        self.batch_size = batch_size
        self.fail_after_calls = fail_after_calls
        self.calls: list[list[str]] = []

    def generate(self, requests, sampling):
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise RuntimeError("killed")
        self.calls.append([r.key for r in requests])
        return [
            f"{r.key}:{r.user_text}:{sampling.seed + i // self.batch_size}"
            for i, r in enumerate(requests)
        ]


def _requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(f"q{i}", "img.png", f"question {i}") for i in range(n)]


def _resumable(inner, folder: Path, identity="model-A") -> ResumableBackend:
    return ResumableBackend(inner, folder, chunk_size=4, batch_size=2, identity=identity)


def test_chunked_generation_equals_one_uninterrupted_call(tmp_path: Path) -> None:
    requests = _requests(11)
    expected = SeededFake(2).generate(requests, SAMPLED)
    inner = SeededFake(2)
    assert _resumable(inner, tmp_path / "p").generate(requests, SAMPLED) == expected
    assert inner.calls == [["q0", "q1", "q2", "q3"], ["q4", "q5", "q6", "q7"], ["q8", "q9", "q10"]]


def test_a_rerun_after_a_crash_generates_only_the_missing_chunks(tmp_path: Path) -> None:
    requests = _requests(11)
    expected = SeededFake(2).generate(requests, SAMPLED)
    crashing = SeededFake(2, fail_after_calls=2)
    with pytest.raises(RuntimeError):
        _resumable(crashing, tmp_path / "p").generate(requests, SAMPLED)
    assert len(list((tmp_path / "p").glob("call*-chunk*.json"))) == 2
    again = SeededFake(2)
    resumed = _resumable(again, tmp_path / "p")
    outputs = resumed.generate(requests, SAMPLED)
    assert outputs == expected  # nothing lost, nothing twice, same seeds
    assert again.calls == [["q8", "q9", "q10"]]
    assert (resumed.resumed_chunks, resumed.generated_chunks) == (2, 1)
    resumed.finish()
    assert not (tmp_path / "p").exists()


def test_progress_of_another_model_or_input_is_not_reused(tmp_path: Path) -> None:
    requests = _requests(8)
    _resumable(SeededFake(2), tmp_path / "p").generate(requests, SAMPLED)
    other_model = SeededFake(2)
    _resumable(other_model, tmp_path / "p", identity="model-B").generate(requests, SAMPLED)
    assert len(other_model.calls) == 2  # everything regenerated
    changed_input = SeededFake(2)
    edited = [*requests[:4], GenerationRequest("q4", "img.png", "edited"), *requests[5:]]
    _resumable(changed_input, tmp_path / "p", identity="model-B").generate(edited, SAMPLED)
    assert changed_input.calls == [["q4", "q5", "q6", "q7"]]  # only the edited chunk


def test_a_damaged_chunk_file_is_regenerated(tmp_path: Path) -> None:
    requests = _requests(8)
    _resumable(SeededFake(2), tmp_path / "p").generate(requests, SAMPLED)
    (tmp_path / "p" / "call000-chunk000001.json").write_text('{"fingerprint": "x", "outp')
    again = SeededFake(2)
    outputs = _resumable(again, tmp_path / "p").generate(requests, SAMPLED)
    assert again.calls == [["q4", "q5", "q6", "q7"]]
    assert outputs == SeededFake(2).generate(requests, SAMPLED)


class TextFake:
    """A text backend (the llm judge's) under the same seed contract."""

    def __init__(self, fail_after_calls: int | None = None) -> None:
        self.fail_after_calls = fail_after_calls
        self.calls: list[list[str]] = []

    def generate_text(self, user_texts, sampling):
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise RuntimeError("killed")
        self.calls.append(list(user_texts))
        return [f"{text}:{sampling.seed + i // 2}" for i, text in enumerate(user_texts)]


def test_text_replies_resume_chunk_by_chunk(tmp_path: Path) -> None:
    prompts = [f"prompt {i}" for i in range(10)]
    expected = TextFake().generate_text(prompts, SAMPLED)
    with pytest.raises(RuntimeError):
        _resumable(TextFake(fail_after_calls=1), tmp_path / "p").generate_text(prompts, SAMPLED)
    again = TextFake()
    resumed = _resumable(again, tmp_path / "p")
    assert resumed.generate_text(prompts, SAMPLED) == expected
    assert again.calls == [prompts[4:8], prompts[8:]]  # the first chunk was read back
    assert (resumed.resumed_chunks, resumed.generated_chunks) == (1, 2)


def test_chunks_must_be_whole_batches(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of the batch size"):
        ResumableBackend(SeededFake(2), tmp_path, chunk_size=3, batch_size=2, identity="m")


def test_the_transformers_backend_keeps_the_seed_contract(
    tiny_model_dir: Path, synthetic_dir: Path, records: list[dict], tmp_path: Path
) -> None:
    """Sampled generation in chunks of two batches equals one call: the resumed run is the run."""
    backend = load_backend("transformers", str(tiny_model_dir), batch_size=2, device="cpu")
    backend.progress = False
    requests = [
        GenerationRequest(r["id"], str(synthetic_dir / r["image"]), "What colour is the shape?")
        for r in records[:7]
    ]
    whole = backend.generate(requests, SAMPLED)
    chunked = _resumable(backend, tmp_path / "p").generate(requests, SAMPLED)
    assert chunked == whole
    assert len(set(whole)) > 1  # sampling really varies, so equal seeds are what makes them equal


# -- resumable training ---------------------------------------------------------------------------
def _checkpoint(scratch: Path, step: int, complete: bool = True) -> Path:
    folder = scratch / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w")
    if complete:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_resume_picks_the_last_complete_checkpoint_of_the_same_run(tmp_path: Path) -> None:
    scratch = tmp_path / "sft.partial"
    assert prepare_scratch(scratch, "run-1", resume=True) is None  # fresh
    _checkpoint(scratch, 50)
    _checkpoint(scratch, 100)
    _checkpoint(scratch, 150, complete=False)  # killed mid-save
    assert prepare_scratch(scratch, "run-1", resume=True) == scratch / "checkpoint-100"
    assert last_complete_checkpoint(scratch) == scratch / "checkpoint-100"


@pytest.mark.parametrize(("fingerprint", "resume"), [("run-2", True), ("run-1", False)])
def test_other_runs_checkpoints_or_resume_off_clear_the_scratch(
    tmp_path: Path, fingerprint: str, resume: bool
) -> None:
    scratch = tmp_path / "sft.partial"
    prepare_scratch(scratch, "run-1", resume=True)
    _checkpoint(scratch, 50)
    assert prepare_scratch(scratch, fingerprint, resume=resume) is None
    assert sorted(p.name for p in scratch.iterdir()) == [FINGERPRINT_FILE]


def test_finalise_moves_only_the_model(tmp_path: Path) -> None:
    scratch, final = tmp_path / "m.partial", tmp_path / "m"
    prepare_scratch(scratch, "run", resume=True)
    _checkpoint(scratch, 5)
    (scratch / "model.safetensors").write_bytes(b"final")
    finalise(scratch, final)
    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors"]
    assert not scratch.exists()
