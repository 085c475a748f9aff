"""Evaluation: self-correction rounds, per-turn scores and counts, the tables and the figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from sherlock.data.prompts import load_prompt, refine_prompt
from sherlock.evaluation.benchmark_files import BenchmarkItem
from sherlock.evaluation.evaluate import accuracy_frame, accuracy_rows, evaluate, paper_table
from sherlock.generation import GenerationBackend, SamplingParams
from sherlock.generation.self_correct import Question, self_correct
from sherlock.report.data_flow import stage_table
from sherlock.report.figures import (
    acceptance_rates,
    accuracy_by_turn,
    perturbation_histograms,
    training_curves,
)
from sherlock.runtime.step_summary import SUMMARY_TAG, collect_summaries, stage_summary

REFINE = load_prompt("refine")
GREEDY = SamplingParams(0.0, 1.0, 16, 11)


def respond(conclusion: str | None) -> str:
    body = "<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION><REASONING>r</REASONING>"
    return body if conclusion is None else body + f"<CONCLUSION>{conclusion}</CONCLUSION>"


class TableBackend(GenerationBackend):
    """Answers item ``key`` in round t with ``answers[key][t]``; records every call."""

    def __init__(self, answers: dict[str, list[str | None]]) -> None:
        self.answers = answers
        self.calls: list[tuple[list, SamplingParams]] = []

    def generate(self, requests, sampling):
        round_index = len(self.calls)
        self.calls.append((list(requests), sampling))
        return [respond(self.answers[r.key][round_index]) for r in requests]


def test_self_correct_refines_the_previous_answer_one_batch_per_round() -> None:
    backend = TableBackend({"a": ["x", "y", "z"], "b": ["p", "q", "r"]})
    questions = [Question("a", "a.png", "Qa?"), Question("b", "b.png", "Qb?")]
    turns = self_correct(backend, questions, REFINE, GREEDY, rounds=2)
    assert turns == [[respond(c) for c in "xyz"], [respond(c) for c in "pqr"]]
    assert len(backend.calls) == 3
    assert [r.user_text for r in backend.calls[0][0]] == ["Qa?", "Qb?"]
    assert backend.calls[2][0][1].user_text == refine_prompt(REFINE, "Qb?", respond("q"))
    assert len({call[1].seed for call in backend.calls}) == 3
    assert len(self_correct(TableBackend({"a": ["x"]}), questions[:1], REFINE, GREEDY, 0)[0]) == 1
    with pytest.raises(ValueError, match="rounds"):
        self_correct(backend, questions, REFINE, GREEDY, rounds=-1)


def test_evaluate_scores_every_turn_with_hand_counted_summary() -> None:
    items = [
        BenchmarkItem("e1", "1.png", "What colour?", "blue"),
        BenchmarkItem("m2", "2.png", "Which animal?", "B", ("cat", "dog")),
        BenchmarkItem("e3", "3.png", "How many?", "3"),
        BenchmarkItem("m4", "4.png", "Which animal?", "B", ("cat", "dog")),
    ]
    backend = TableBackend(
        {
            "e1": ["blue", "red", "Blue."],  # correct, wrong, correct
            "m2": ["A", "B", "dog"],  # wrong, correct, correct
            "e3": [None, "3", "3.0"],  # no conclusion, correct, correct
            "m4": ["B", "a horse", "E"],  # correct, no option, no option
        }
    )
    rows, summary = evaluate(backend, items, REFINE, GREEDY, rounds=2, answer_from="conclusion")
    # the model sees the options, also inside the REFINE prompt
    assert "Options:\nA. cat\nB. dog" in backend.calls[0][0][1].user_text
    assert "Options:\nA. cat\nB. dog" in backend.calls[1][0][1].user_text
    assert rows[1]["statuses"] == ["wrong", "correct", "correct"]
    assert rows[1]["predictions"] == ["A", "B", "B"]
    assert rows[2]["statuses"] == ["no_conclusion", "correct", "correct"]
    turns = summary["turns"]
    assert [t["correct"] for t in turns] == [2, 2, 3]
    assert [t["accuracy"] for t in turns] == [0.5, 0.5, 0.75]
    assert [t["no_conclusion"] for t in turns] == [1, 0, 0]
    assert [t["no_option"] for t in turns] == [0, 1, 1]
    assert [t["wrong"] for t in turns] == [1, 1, 0]
    assert [(t["gained"], t["lost"]) for t in turns] == [(0, 0), (2, 2), (1, 0)]
    assert summary["items"] == 4 and summary["rounds"] == 2
    assert summary["answer_from"] == "conclusion"
    assert [t["no_format"] for t in turns] == [0.25, 0.0, 0.0]  # e3's first answer
    # read as a whole where there is no CONCLUSION (auto), e3's first answer is no "3"
    rows, summary = evaluate(TableBackend(backend.answers), items, REFINE, GREEDY, rounds=2)
    assert rows[2]["statuses"] == ["wrong", "correct", "correct"]
    assert [t["no_conclusion"] for t in summary["turns"]] == [0, 0, 0]


def summary_of(accuracies: list[float]) -> dict:
    return {
        "turns": [
            {
                "turn": t,
                "items": 20,
                "correct": round(a * 20),
                "accuracy": a,
                "wrong": 0,
                "no_conclusion": 0,
                "no_option": 0,
                "gained": 0,
                "lost": 0,
            }
            for t, a in enumerate(accuracies)
        ]
    }


def frame_of_two() -> pd.DataFrame:
    rows = []
    rows += accuracy_rows(summary_of([0.50, 0.55, 0.60, 0.65]), "sft", "synth")
    rows += accuracy_rows(summary_of([0.40, 0.30, 0.30, 0.20]), "r0", "synth")
    rows += accuracy_rows(summary_of([0.30, 0.35, 0.40, 0.45]), "sft", "mmb")
    rows += accuracy_rows(summary_of([0.20, 0.20, 0.10, 0.10]), "r0", "mmb")
    return accuracy_frame(rows, ["base", "r0", "sft"])


def test_accuracy_frame_orders_checkpoints_like_the_pipeline() -> None:
    frame = frame_of_two()
    assert list(dict.fromkeys(frame["checkpoint"])) == ["r0", "sft"]
    assert len(frame) == 16 and frame["turn"].tolist()[:4] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="iter9"):
        accuracy_frame(accuracy_rows(summary_of([0.1]), "iter9", "x"), ["base"])


def test_paper_table_has_direct_self_corrected_and_the_average_by_turn() -> None:
    table = paper_table(frame_of_two())
    assert list(table.index) == ["r0", "sft"]
    assert table.loc["sft", ("synth", "direct")] == 50.0
    assert table.loc["sft", ("synth", "self-corrected")] == 65.0
    assert table.loc["r0", ("mmb", "self-corrected")] == 10.0
    # average over the two benchmarks, at each turn, and the change from direct to the last turn
    assert table.loc["sft", ("average", "direct")] == 40.0
    assert table.loc["sft", ("average", "turn 2")] == 50.0
    assert table.loc["sft", ("average", "change")] == 15.0
    assert table.loc["r0", ("average", "change")] == -15.0


def _is_png(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_figures_are_written_as_png(tmp_path: Path) -> None:
    accuracy_by_turn(frame_of_two(), tmp_path / "acc.png")
    assert _is_png(tmp_path / "acc.png")[0] > 600  # two benchmarks and their average
    sherlock_log = [
        {
            "loss": 2.0 - 0.1 * s,
            "loss/dpo": 0.7,
            "rewards/margins": 0.1 * s,
            "rewards/accuracies": 0.5,
            "step": s,
        }
        for s in range(1, 6)
    ] + [{"train_loss": 1.5, "step": 5}]
    training_curves("offline", sherlock_log, str(tmp_path / "offline.png"))
    training_curves(
        "r0", [{"loss": 3.0, "step": 10}, {"loss": 1.0, "step": 20}], str(tmp_path / "r0.png")
    )
    # three panels (loss, margins, accuracies) against one (loss) for an SFT log
    assert _is_png(tmp_path / "offline.png")[0] > 2 * _is_png(tmp_path / "r0.png")[0]
    training_curves("empty", [], str(tmp_path / "empty.png"))
    pairs = {
        "offline": [{"truncation": i % 3, "noise_level": 0.2} for i in range(9)],
        "iter1": [{"truncation": 1, "noise_level": 1.0}],
    }
    perturbation_histograms(pairs, str(tmp_path / "pert.png"))
    acceptance_rates(
        {"iter1": {"candidates": 10, "kept": 4, "not_kept": {"judged not equivalent": 6}}},
        str(tmp_path / "accept.png"),
    )
    for name in ("empty", "pert", "accept"):
        _is_png(tmp_path / f"{name}.png")


def test_stage_table_counts_records_in_and_out_of_every_step() -> None:
    table = stage_table(
        {"read": 10, "valid": 8, "rejected": 2, "reject_reasons": {"missing image": 2}},
        {"D_A": 4, "D_B": 2, "pool_1": 2},
        4,
        4,
        [{"truncation": 0, "noise_level": 0.2}, {"truncation": 2, "noise_level": 1.0}] * 2,
        {
            1: {
                "chosen_summary": {
                    "candidates": 2,
                    "kept": 1,
                    "acceptance_rate": 0.5,
                    "judge": "exact",
                    "not_kept": {"judged not equivalent": 1},
                },
                "pairs": [{"truncation": 1, "noise_level": 0.25}],
            }
        },
    )
    rows = table.set_index("step")
    assert rows.loc["validate the source records", "records_out"] == 8
    assert "missing image: 2" in rows.loc["validate the source records", "details"]
    assert rows.loc["D_A, D_B and the online pools", "records_out"] == 8
    offline = rows.loc["offline preference pairs"]
    assert offline["records_out"] == 4 and "{0: 2, 2: 2}" in offline["details"]
    assert "mean 0.600" in offline["details"]
    chosen = table[table["step"].str.startswith("chosen")].iloc[0]
    assert (chosen["records_in"], chosen["records_out"]) == (2, 1)
    assert "acceptance 50.0%" in chosen["details"]


def test_summary_lines_are_collected_from_logs_with_progress_bars(tmp_path: Path, capsys) -> None:
    stage_summary("splits", "10 records")
    assert capsys.readouterr().out == f"{SUMMARY_TAG} splits: 10 records\n"
    log = tmp_path / "a.log"
    log.write_text(f"noise\n 50%|##  | 1/2\r100%|####| 2/2\r{SUMMARY_TAG} eval: 50%\nmore\n")
    assert collect_summaries([log, tmp_path / "absent.log"]) == [f"{SUMMARY_TAG} eval: 50%"]


def test_the_inference_command_prints_every_round(tiny_model_dir: Path, synthetic_dir: Path):
    row = json.loads((synthetic_dir / "test.jsonl").read_text().splitlines()[0])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sherlock.generation.correct_cli",
            "--model",
            str(tiny_model_dir),
            "--image",
            str(synthetic_dir / row["image"]),
            "--question",
            "What colour?",
            "--rounds",
            "2",
            "--max-new-tokens",
            "8",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    output = json.loads(result.stdout)
    assert len(output["turns"]) == len(output["answers"]) == 3
    assert output["question"] == "What colour?"
