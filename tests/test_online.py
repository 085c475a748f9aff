"""Stage III data: judges, candidate generation turn by turn, and the chosen selection."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sherlock.data.prompts import load_prompt, refine_prompt
from sherlock.data.records import Record
from sherlock.generation import GenerationBackend, GenerationRequest, SamplingParams
from sherlock.online.judge import (
    JudgeItem,
    exact_equivalent,
    judge_prompt,
    llm_equivalent,
    says_yes,
)
from sherlock.online.self_consistency import generate_candidates, select_chosen

JUDGE_PROMPT = load_prompt("consistency_judge")
REFINE = load_prompt("refine")


def response(answer: str | None, caption: str = "c") -> str:
    head = f"<SUMMARY>s</SUMMARY><CAPTION>{caption}</CAPTION><REASONING>r</REASONING>"
    return head if answer is None else head + f"<CONCLUSION>{answer}</CONCLUSION>"


# -- judges ------------------------------------------------------------------------------------


def test_exact_judge_normalises_case_space_and_full_stops() -> None:
    items = [
        JudgeItem("q", ("Purple.", " purple", "PURPLE")),
        JudgeItem("q", ("two  circles", "Two circles.", "two circles")),
        JudgeItem("q", ("red", "red", "purple")),
        JudgeItem("q", ("3", "three", "3")),  # exact means exact: no number words
    ]
    assert exact_equivalent(items) == [True, True, False, False]


def test_judge_prompt_fills_every_slot_once() -> None:
    item = JudgeItem("Which {answer1}?", ("A {question}", "B", "C"))
    text = judge_prompt(JUDGE_PROMPT, item)
    assert "[QUESTION]:\nWhich {answer1}?" in text
    assert "[ANSWER1]:\nA {question}\n[ANSWER2]:\nB\n[ANSWER3]:\nC" in text
    with pytest.raises(ValueError, match=r"\{answer3\}"):
        judge_prompt("{question} {answer1} {answer2}", item)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [("Yes", True), ("yes.", True), ("YES, all three agree", True), ("No", False), ("", False)],
)
def test_llm_judge_reply_parsing(reply: str, verdict: bool) -> None:
    assert says_yes(reply) is verdict


def test_llm_judge_batches_its_prompts_and_checks_the_count() -> None:
    items = [JudgeItem("q1", ("a", "a", "a")), JudgeItem("q2", ("a", "b", "a"))]
    seen: list[list[str]] = []

    def fake_model(prompts: list[str]) -> list[str]:
        seen.append(prompts)
        return ["Yes", "No, the second differs"]

    verdicts, replies = llm_equivalent(items, JUDGE_PROMPT, fake_model)
    assert verdicts == [True, False] and replies[1].startswith("No")
    assert len(seen) == 1 and seen[0][1] == judge_prompt(JUDGE_PROMPT, items[1])
    with pytest.raises(RuntimeError, match="answered 1 of 2"):
        llm_equivalent(items, JUDGE_PROMPT, lambda prompts: ["Yes"])


def test_llm_judge_runs_a_real_text_model(tiny_text_model_dir: Path) -> None:
    """A tiny random Qwen2 causal LM with the tiny tokenizer: the plumbing, not the verdicts."""
    from sherlock.generation import load_text_backend
    from sherlock.generation.hf import TransformersTextBackend

    backend = load_text_backend(
        "transformers", str(tiny_text_model_dir), batch_size=2, progress=False
    )
    assert isinstance(backend, TransformersTextBackend)
    items = [JudgeItem(f"q{i}", ("a", "a", "b")) for i in range(3)]
    greedy = SamplingParams(0.0, 1.0, 5, 0)
    verdicts, replies = llm_equivalent(
        items, JUDGE_PROMPT, lambda prompts: backend.generate_text(prompts, greedy)
    )
    assert len(verdicts) == len(replies) == 3
    assert all(isinstance(reply, str) for reply in replies)
    assert verdicts == [says_yes(reply) for reply in replies]


# -- candidates --------------------------------------------------------------------------------


class ScriptedBackend(GenerationBackend):
    """Answers turn t of item n with a fixed response; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[GenerationRequest], SamplingParams]] = []

    def generate(self, requests, sampling):
        self.calls.append((list(requests), sampling))
        turn = len(self.calls) - 1
        return [response(f"{r.key}-t{turn}") for r in requests]


def test_candidates_refine_each_previous_turn_in_one_batch_per_turn() -> None:
    items = [Record("a", "a.png", "Q a?", "unused"), Record("b", "b.png", "Q b?", "unused")]
    backend = ScriptedBackend()
    sampling = SamplingParams(0.7, 1.0, 32, 5)
    rows = generate_candidates(backend, items, REFINE, sampling, {"iteration": 2, "model": "m1"})
    assert len(backend.calls) == 4  # y0 + three corrections, all items per call
    assert [r.user_text for r in backend.calls[0][0]] == ["Q a?", "Q b?"]
    for turn in (1, 2, 3):
        requests = backend.calls[turn][0]
        expected = refine_prompt(REFINE, "Q a?", response(f"a-t{turn - 1}"))
        assert requests[0].user_text == expected and requests[0].image == "a.png"
    seeds = [call[1].seed for call in backend.calls]
    assert len(set(seeds)) == 4  # a different stream per turn
    assert rows[1]["turns"] == [response(f"b-t{t}") for t in range(4)]
    assert rows[1]["answers"] == [f"b-t{t}" for t in range(4)]
    assert rows[0]["iteration"] == 2 and rows[0]["model"] == "m1"
    assert rows[0]["images"] == ["a.png"] and rows[0]["question"] == "Q a?"


# -- chosen ------------------------------------------------------------------------------------


def candidate(name: str, turns: list[str]) -> dict:
    from sherlock.data.response import extract_answer

    return {
        "id": name,
        "question": f"{name}?",
        "turns": turns,
        "answers": [extract_answer(t) for t in turns],
    }


def test_selection_keeps_consistent_items_and_counts_every_other_one() -> None:
    ok = [response("red"), response("blue"), response("Blue."), response("blue")]
    candidates = [
        candidate("keep1", ok),
        candidate("no_conclusion", [ok[0], ok[1], response(None), ok[3]]),
        candidate("bad_y3", [ok[0], ok[1], ok[2], "<CONCLUSION>blue</CONCLUSION>"]),
        candidate("bad_y0", ["<CONCLUSION>red</CONCLUSION>", *ok[1:]]),
        candidate("disagree", [ok[0], ok[1], response("red"), ok[3]]),
        candidate("keep2", ok),
        candidate("over", ok),
    ]
    judged: list[list[JudgeItem]] = []

    def judge(items):
        judged.append(items)
        return exact_equivalent(items)

    kept, summary = select_chosen(candidates, judge, target=2)
    assert [c["id"] for c in kept] == ["keep1", "keep2"]
    # the judge saw only the screened items, with the answers of turns 1-3
    assert [item.question for item in judged[0]] == ["keep1?", "disagree?", "keep2?", "over?"]
    assert judged[0][0].answers == ("blue", "Blue.", "blue")
    assert summary["candidates"] == 7 and summary["kept"] == 2
    assert summary["acceptance_rate"] == round(2 / 7, 4)
    assert summary["not_kept"] == {
        "beyond the target count": 1,
        "turn 2 has no CONCLUSION": 1,
        "turns 1-3 judged not equivalent": 1,
        "y0 is not in the four-stage format (its head cannot be cut)": 1,
        "y3 (the chosen response) is not in the four-stage format": 1,
    }


def test_selection_of_nothing_is_reported_not_an_error() -> None:
    kept, summary = select_chosen([], exact_equivalent, target=5)
    assert kept == [] and summary["candidates"] == 0 and summary["acceptance_rate"] == 0.0


def test_too_few_pairs_stop_the_run_with_what_to_change(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    ok = [response("red"), response("blue"), response("blue"), response("blue")]
    rows = [candidate("a", ok), candidate("b", [ok[0], ok[1], response("red"), ok[3]])]
    path = tmp_path / "candidates.json"
    path.write_text(json.dumps(rows))
    script = Path(__file__).resolve().parents[1] / "workflow_scripts" / "select_chosen.py"
    command = [sys.executable, str(script), "--candidates", str(path), "--judge", "exact"]
    command += ["--seed", "1", "--target", "10", "--output", str(tmp_path / "chosen.json")]
    command += ["--summary", str(tmp_path / "summary.yaml")]
    result = subprocess.run([*command, "--min-pairs", "2"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "kept 1 pairs from 2 candidates, fewer than online.min_pairs = 2" in result.stderr
    assert "turns 1-3 judged not equivalent" in result.stderr and "splits.pool" in result.stderr
    assert not (tmp_path / "chosen.json").exists()
    result = subprocess.run([*command, "--min-pairs", "1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert [row["id"] for row in json.loads((tmp_path / "chosen.json").read_text())] == ["a"]
    # fewer than the target: the summary warns, with the pool that would reach it (1 of 2
    # accepted: 20 items for 10 pairs)
    warning = "kept 1 of the 10 pairs online.target_pairs asks for (1/2 accepted): about 20"
    assert warning in yaml.safe_load((tmp_path / "summary.yaml").read_text())["warning"]
    assert f"WARNING: {warning}" in result.stdout and f"WARNING: {warning}" in result.stderr
    result = subprocess.run(
        [*command[:-6], "--target", "1", *command[-4:], "--min-pairs", "1"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in yaml.safe_load((tmp_path / "summary.yaml").read_text())


def test_the_llm_judge_script_asks_the_text_model_of_its_backend(
    tmp_path: Path, tiny_text_model_dir: Path
) -> None:
    """select_chosen.py with the llm judge on the transformers backend: the replies it records
    are the model's greedy replies to the filled consistency prompt, and the verdicts follow."""
    import json
    import subprocess
    import sys

    import yaml

    from sherlock.generation.hf import TransformersTextBackend
    from sherlock.online.self_consistency import judge_item

    ok = [response("red"), response("blue"), response("blue"), response("blue")]
    rows = [candidate("a", ok), candidate("b", [ok[0], ok[1], response("red"), ok[3]])]
    path = tmp_path / "candidates.json"
    path.write_text(json.dumps(rows))
    script = Path(__file__).resolve().parents[1] / "workflow_scripts" / "select_chosen.py"
    command = [sys.executable, str(script), "--candidates", str(path), "--judge", "llm"]
    command += ["--judge-model", str(tiny_text_model_dir), "--backend", "transformers"]
    command += ["--judge-batch-size", "2", "--judge-max-new-tokens", "6", "--seed", "1"]
    command += ["--target", "10", "--min-pairs", "0", "--output", str(tmp_path / "chosen.json")]
    command += ["--summary", str(tmp_path / "summary.yaml")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = yaml.safe_load((tmp_path / "summary.yaml").read_text())
    assert summary["judge"] == "llm" and summary["judge_backend"] == "transformers"
    assert summary["judge_model"] == str(tiny_text_model_dir) and summary["judged"] == 2

    backend = TransformersTextBackend(str(tiny_text_model_dir), batch_size=2, progress=False)
    prompts = [judge_prompt(JUDGE_PROMPT, judge_item(row)) for row in rows]
    expected = backend.generate_text(prompts, SamplingParams(0.0, 1.0, 6, 1))
    assert summary["judge_replies_sample"] == expected
    assert summary["judged_equivalent"] == sum(says_yes(reply) for reply in expected)
    kept = json.loads((tmp_path / "chosen.json").read_text())
    assert [row["id"] for row in kept] == [
        row["id"] for row, reply in zip(rows, expected, strict=True) if says_yes(reply)
    ]


def test_a_killed_llm_judge_resumes_to_the_verdicts_of_an_uninterrupted_one(
    tmp_path: Path, tiny_text_model_dir: Path
) -> None:
    """select_chosen.py with the llm judge, SIGKILLed once its first chunk of replies is saved,
    then rerun: it reads the saved replies back, asks the model only the rest, and writes the
    files of an uninterrupted run."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    ok = [response("red"), response("blue"), response("blue"), response("blue")]
    rows = [candidate(f"item{n}", ok) for n in range(24)]  # 6 chunks of 4 prompts
    path = tmp_path / "candidates.json"
    path.write_text(json.dumps(rows))
    script = Path(__file__).resolve().parents[1] / "workflow_scripts" / "select_chosen.py"

    def command(folder: Path) -> list[str]:
        folder.mkdir(exist_ok=True)
        words = [sys.executable, str(script), "--candidates", str(path), "--judge", "llm"]
        words += ["--judge-model", str(tiny_text_model_dir), "--backend", "transformers"]
        words += ["--judge-batch-size", "2", "--judge-chunk-size", "4"]
        words += ["--judge-max-new-tokens", "24", "--seed", "1", "--target", "100"]
        words += ["--min-pairs", "0", "--output", str(folder / "chosen.json")]
        return [*words, "--summary", str(folder / "summary.yaml")]

    whole = subprocess.run(command(tmp_path / "whole"), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert not (tmp_path / "whole" / "chosen.json.progress").exists()  # deleted when done

    progress = tmp_path / "killed" / "chosen.json.progress"
    job = subprocess.Popen(
        command(tmp_path / "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not list(progress.glob("call*-chunk*.json")) and job.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    saved = len(list(progress.glob("call*-chunk*.json")))
    assert 1 <= saved < 6, "the job ended before it could be killed mid-way"
    assert not (tmp_path / "killed" / "chosen.json").exists()

    rerun = subprocess.run(command(tmp_path / "killed"), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{saved} chunk(s) read back" in rerun.stderr
    assert f"{6 - saved} generated" in rerun.stderr
    for name in ("chosen.json", "summary.yaml"):
        assert (tmp_path / "killed" / name).read_text() == (tmp_path / "whole" / name).read_text()
    assert not progress.exists()
