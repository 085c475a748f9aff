"""VLMEvalKit's dataset TSVs as benchmarks: loading (base64 pictures, image-index references,
hints, several pictures, malformed rows), each benchmark type's score against hand-computed
values, open answers through a judge, and the prediction files round-tripping."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from sherlock.evaluation.answers import read_yes_no
from sherlock.evaluation.benchmark_config import (
    check_benchmark_files,
    judge_problems,
    resolved_benchmarks,
)
from sherlock.evaluation.benchmark_files import read_benchmark
from sherlock.evaluation.differences import vlmevalkit_differences
from sherlock.evaluation.evaluate import accuracy_frame, accuracy_rows, paper_table, score_turns
from sherlock.evaluation.metrics import add_scores, metric_for, turn_scores
from sherlock.evaluation.open_answers import judge_rows, matches
from sherlock.evaluation.published import PAPER_AVERAGES
from sherlock.evaluation.vlmevalkit import (
    convert,
    prediction_file_name,
    read_predictions,
    write_predictions,
)


def picture(colour: str, size: tuple[int, int] = (16, 12)) -> str:
    """A PNG as VLMEvalKit stores it: base64 text."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_tsv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def respond(conclusion: str | None) -> str:
    body = "<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION><REASONING>r</REASONING>"
    return body if conclusion is None else body + f"<CONCLUSION>{conclusion}</CONCLUSION>"


def scored(
    benchmark: Path, answers: dict[str, list[str | None]], open_as_choice: bool = False
) -> list[dict]:
    """The benchmark's items answered as ``answers`` says (id → conclusion per turn); items
    without answers are left out."""
    items = [item for item in read_benchmark(benchmark) if item.id in answers]
    return [
        score_turns(item, [respond(c) for c in answers[item.id]], open_as_choice=open_as_choice)
        for item in items
    ]


MCQ_ROWS = [
    {"index": 1, "image": picture("red"), "question": "What colour is the square?",
     "hint": "The picture shows one square.", "A": "red", "B": "blue", "C": "",
     "answer": "A", "category": "colour", "l2-category": "attribute"},
    {"index": 2, "image": "1", "question": "Which shape is shown?", "hint": "",
     "A": "square", "B": "circle", "C": "triangle", "answer": "A", "category": "shape",
     "l2-category": "attribute"},
    {"index": 3, "image": str([picture("red", (10, 8)), picture("blue", (6, 12))]),
     "question": "Which picture is blue?", "hint": "", "A": "left", "B": "right", "C": "",
     "answer": "B", "category": "colour", "l2-category": "attribute"},
    # malformed: an answer that is no option; a reference to no row; a picture that is no image
    {"index": 4, "image": "1", "question": "Odd one?", "hint": "", "A": "x", "B": "y", "C": "",
     "answer": "E", "category": "shape", "l2-category": "attribute"},
    {"index": 5, "image": "99", "question": "Where?", "hint": "", "A": "x", "B": "y", "C": "",
     "answer": "A", "category": "shape", "l2-category": "attribute"},
    {"index": 6, "image": base64.b64encode(b"not a picture at all, " * 4).decode(),
     "question": "What?", "hint": "", "A": "x", "B": "y", "C": "", "answer": "A",
     "category": "shape", "l2-category": "attribute"},
]  # fmt: skip


def test_a_vlmevalkit_file_is_read_with_references_hints_and_malformed_rows_named(
    tmp_path: Path,
) -> None:
    tsv = write_tsv(tmp_path / "MMStar.tsv", MCQ_ROWS)
    out = tmp_path / "eval" / "MMStar.jsonl"
    result = convert(tsv, out, tmp_path / "eval" / "MMStar_images", "accuracy")
    assert (result.rows, result.items, result.pictures) == (6, 3, 2)
    bad = {(m.file, m.index, m.column) for m in result.malformed}
    assert bad == {(str(tsv), "4", "answer"), (str(tsv), "5", "image"), (str(tsv), "6", "image")}
    summary = result.summary()
    assert summary["malformed_rows"] == 3 and "index 5, column 'image'" in result.line()
    items = read_benchmark(out)
    assert [item.id for item in items] == ["1", "2", "3"]
    first, second, third = items
    assert second.image == first.image  # the picture decoded once, shared by reference
    assert first.choices == ("red", "blue") and first.answer == "A"
    assert first.prompt().startswith("Hint: The picture shows one square.\nWhat colour")
    assert second.prompt().startswith("Which shape is shown?\nOptions:\nA. square")
    with Image.open(third.image) as image:  # two pictures side by side
        assert image.size == (16, 12)
        assert image.getpixel((2, 2)) == (255, 0, 0) and image.getpixel((12, 2)) == (0, 0, 255)
    assert first.meta["columns"]["category"] == "colour" and "image" not in first.meta["columns"]
    assert len(list((tmp_path / "eval" / "MMStar_images").iterdir())) == 2


def test_a_file_without_the_needed_columns_is_refused(tmp_path: Path) -> None:
    tsv = write_tsv(tmp_path / "x.tsv", [{"index": 1, "question": "q", "image": picture("red")}])
    with pytest.raises(ValueError, match="no 'answer' column"):
        convert(tsv, tmp_path / "x.jsonl", tmp_path / "img", "accuracy")


def mme_rows() -> list[dict]:
    """MME's layout: two questions per image (Yes, then No), the second naming the first's
    index; image_path groups the pair."""
    rows = []
    for number, (task, name) in enumerate(
        [("color", "color/1.jpg"), ("color", "color/2.jpg"), ("OCR", "OCR/1.jpg")]
    ):
        first = 2 * number + 1
        rows.append(
            {
                "index": first,
                "image": picture("green"),
                "image_path": name,
                "question": f"Is it green? ({name})",
                "answer": "Yes",
                "category": task,
            }
        )
        rows.append(
            {
                "index": first + 1,
                "image": str(first),
                "image_path": name,
                "question": f"Is it red? ({name})",
                "answer": "No",
                "category": task,
            }
        )
    return rows  # fmt: skip


def test_mme_score_is_accuracy_plus_pair_accuracy_summed_over_subtasks(tmp_path: Path) -> None:
    tsv = write_tsv(tmp_path / "MME.tsv", mme_rows())
    out = tmp_path / "MME.jsonl"
    result = convert(tsv, out, tmp_path / "img", metric_for(str(tsv), "vlmevalkit", None))
    assert result.items == 6 and result.pictures == 3
    # color/1: both right; color/2: Yes right, No wrong; OCR/1: first wrong, second right
    answers = {
        "1": ["Yes"], "2": ["No, it is not."], "3": ["yes"], "4": ["Yes"], "5": ["No"],
        "6": ["no"],
    }  # fmt: skip
    rows = scored(out, answers)
    assert [row["statuses"][0] for row in rows] == ["correct"] * 3 + ["wrong"] * 2 + ["correct"]
    scores = turn_scores(rows, "mme", 0)
    # color: acc 3/4 = 75, acc+ 1/2 = 50 -> 125; OCR: acc 1/2 = 50, acc+ 0 -> 50
    assert scores["subtasks"] == {"color": 125.0, "OCR": 50.0}
    assert scores["score"] == 175.0 and scores["perception"] == 175.0
    assert scores["reasoning"] == 0.0
    assert scores["percent"] == pytest.approx(175 / 400 * 100)


def test_hallusionbench_question_figure_and_all_accuracies(tmp_path: Path) -> None:
    # index: <category>_<subcategory>_<n>_<set>_<figure>_<question>; answers written 1/0, which
    # we read as Yes/No and VLMEvalKit compares as written (counted below)
    cases = [
        ("VS_chart_0_1_0_0", "1", "Yes"),  # set 1, figure 0, question 0: right
        ("VS_chart_1_1_0_1", "0", "No"),  # set 1, figure 0, question 1: right
        ("VS_chart_2_1_1_0", "0", "Yes"),  # set 1, figure 1, question 0: wrong
        ("VS_chart_3_1_1_1", "1", "Yes"),  # set 1, figure 1, question 1: right
        ("VS_chart_4_2_0_0", "1", "Yes"),  # set 2, figure 0, question 0: right
    ]
    tsv = write_tsv(
        tmp_path / "HallusionBench.tsv",
        [
            {"index": index, "image": picture("white"), "question": "Is the bar higher?",
             "answer": answer, "category": "VS", "l2-category": "chart"}
            for index, answer, _ in [*cases, ("VS_chart_5", "1", "Yes")]
        ],
    )  # fmt: skip
    out = tmp_path / "hb.jsonl"
    metric = metric_for(str(tsv), "vlmevalkit", None)
    assert metric == "hallusionbench"
    result = convert(tsv, out, tmp_path / "img", metric)
    assert result.items == 5  # the row without set, figure and question ids is named
    assert [(m.index, m.column) for m in result.malformed] == [("VS_chart_5", "index")]
    rows = scored(out, {index: [said] for index, _, said in cases})
    scores = turn_scores(rows, metric, 0)
    assert scores["aAcc"] == pytest.approx(80.0)  # 4 of 5
    assert scores["fAcc"] == pytest.approx(200 / 3)  # figures (1,0) and (2,0) of 3
    assert scores["qAcc"] == pytest.approx(200 / 3)  # questions (1,1) and (2,0) of 3
    assert scores["score"] == pytest.approx((80 + 400 / 3) / 3)
    assert vlmevalkit_differences(rows, metric) == {"answer_not_yes_no_as_written": 5}


def test_mmbench_counts_a_question_only_when_every_circular_copy_is_right(tmp_path: Path) -> None:
    rows = [
        {"index": index, "image": picture("red"), "question": "Colour?", "A": "red",
         "B": "blue", "answer": "A", "category": "c"}
        for index in (5, 1_000_005, 2_000_005, 6)
    ]  # fmt: skip
    tsv = write_tsv(tmp_path / "MMBench_DEV_EN_V11.tsv", rows)
    out = tmp_path / "mmb.jsonl"
    convert(tsv, out, tmp_path / "img", "mmbench")
    said = {"5": ["A"], "1000005": ["A"], "2000005": ["B"], "6": ["A. red"]}
    rows = scored(out, said)
    assert turn_scores(rows, "mmbench", 0)["score"] == 50.0  # question 5 lost, 6 kept
    assert turn_scores(rows, "accuracy", 0)["score"] == 75.0


def test_mmmu_is_scored_on_its_validation_split(tmp_path: Path) -> None:
    rows = [
        {"index": index, "image": picture("red"), "question": "Colour?", "A": "red",
         "B": "blue", "answer": "A", "split": split}
        for index, split in ((1, "dev"), (2, "validation"), (3, "validation"))
    ]  # fmt: skip
    tsv = write_tsv(tmp_path / "MMMU_DEV_VAL.tsv", rows)
    metric = metric_for(str(tsv), "vlmevalkit", None)
    assert metric == "mmmu"
    convert(tsv, tmp_path / "mmmu.jsonl", tmp_path / "img", metric)
    scores = turn_scores(scored(tmp_path / "mmmu.jsonl", {"1": ["A"], "2": ["A"], "3": ["B"]}),
                         metric, 0)  # fmt: skip
    assert (scores["score"], scores["scored"]) == (50.0, 2)  # the dev row is not counted


def test_yes_or_no_reads_one_word_like_vlmevalkit() -> None:
    assert read_yes_no("Yes, it is.") == "Yes"
    assert read_yes_no("no") == "No"
    assert read_yes_no("Yes and no") is None
    assert read_yes_no("nothing") is None  # a word, not a substring


def test_open_answers_are_judged_then_compared_by_rules(tmp_path: Path) -> None:
    rows = [
        {"index": "m1", "image": picture("red"), "question": "What is the length?",
         "answer": "3.14", "answer_type": "float", "precision": "2", "choices": ""},
        {"index": "m2", "image": picture("red"), "question": "Which shape?", "answer": "circle",
         "answer_type": "text", "precision": "", "choices": "['square', 'circle']"},
        {"index": "v1", "image": picture("red"), "question": "Colours?",
         "answer": "orange<AND>white", "answer_type": "", "precision": "", "choices": ""},
        {"index": "v2", "image": picture("red"), "question": "Year?", "answer": "2004<OR>2005",
         "answer_type": "", "precision": "", "choices": ""},
    ]  # fmt: skip
    tsv = write_tsv(tmp_path / "MathVista_MINI.tsv", rows)
    out = tmp_path / "mv.jsonl"
    assert metric_for(str(tsv), "vlmevalkit", None) == "judge"
    convert(tsv, out, tmp_path / "img", "judge")
    # turn 0 / turn 1 conclusions; the judge's replies are keyed by the conclusion it reads
    answers = {
        "m1": ["about 3.141 cm", "roughly 3.2"],
        "m2": ["option B", None],
        "v1": ["white and orange", "orange"],
        "v2": ["It was 2005.", "I cannot tell"],
    }
    replies = {
        "about 3.141 cm": "3.141",
        "roughly 3.2": "3.2",
        "option B": "B",
        "white and orange": "white and orange",
        "orange": "orange",
        "It was 2005.": "2005",
        "I cannot tell": "NONE",
    }
    seen: list[str] = []

    def generate_text(prompts: list[str]) -> list[str]:
        seen.extend(prompts)
        return [replies[p.split("[MODEL ANSWER]:\n")[1].split("\n")[0]] for p in prompts]

    judged = judge_rows(
        scored(out, answers), load_extraction_prompt(), generate_text, answer_from="conclusion"
    )
    assert len(seen) == 7  # one prompt per turn with a CONCLUSION
    assert [row["statuses"] for row in judged] == [
        ["correct", "wrong"],  # 3.141 rounds to 3.14 at precision 2; 3.2 does not
        ["correct", "no_conclusion"],  # the letter B names 'circle'
        ["correct", "wrong"],  # <AND>: both parts needed
        ["correct", "no_option"],  # <OR>: one alternative; NONE: no answer
    ]
    assert judged[0]["judged"] == ["3.141", "3.2"]
    summary = {"turns": [{"turn": 0}, {"turn": 1}]}
    add_scores(summary, judged, "judge")
    assert [t["score"] for t in summary["turns"]] == [100.0, 0.0]
    assert matches("7", "7.0", {"answer_type": "integer"})
    # read with auto, m2's second turn (no CONCLUSION) goes to the judge whole
    replies[respond(None)] = "circle"
    judged = judge_rows(scored(out, answers), load_extraction_prompt(), generate_text)
    assert judged[1]["statuses"] == ["correct", "correct"] and len(seen) == 7 + 8


def load_extraction_prompt() -> str:
    from sherlock.data.prompts import load_prompt

    return load_prompt("answer_extraction")


def test_prediction_files_round_trip(tmp_path: Path) -> None:
    tsv = write_tsv(tmp_path / "MMStar.tsv", MCQ_ROWS[:3])
    out = tmp_path / "MMStar.jsonl"
    convert(tsv, out, tmp_path / "img", "accuracy")
    rows = scored(out, {"1": ["A", "B"], "2": [None, "A. square"], "3": ["B", "B"]})
    name = prediction_file_name("iter2", "MMStar", 1)
    assert name == "iter2-turn1_MMStar.tsv"
    for turn in (0, 1):
        path = tmp_path / prediction_file_name("iter2", "MMStar", turn)
        assert write_predictions(path, rows, turn) == 3
    back = read_predictions(tmp_path / name)
    source = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
    assert list(back.columns) == [c for c in source.columns if c != "image"] + ["prediction"]
    assert back.drop(columns="prediction").equals(source.drop(columns="image"))
    assert back["prediction"].tolist() == ["B", "A. square", "B"]
    direct = read_predictions(tmp_path / prediction_file_name("iter2", "MMStar", 0))
    assert direct["prediction"][1] == respond(None)  # no CONCLUSION: the whole response


def test_missing_benchmark_files_are_named_with_where_to_get_them(tmp_path: Path) -> None:
    (tmp_path / "MMStar.tsv").write_text("index\n")
    evaluation = {
        "data_dir": str(tmp_path),
        "benchmarks": {
            "MMStar": {"path": "MMStar.tsv", "format": "vlmevalkit"},
            "MME": {"path": "MME.tsv", "format": "vlmevalkit"},
            "own": {"path": "/nowhere/own.jsonl"},
            "dropped": None,  # a preset's benchmark left out by a later config file
        },
    }
    benchmarks = resolved_benchmarks(evaluation)
    assert "dropped" not in benchmarks
    assert benchmarks["MME"] == {
        "path": str(tmp_path / "MME.tsv"),
        "image_root": None,
        "format": "vlmevalkit",
        "metric": "mme",
    }
    assert benchmarks["own"]["metric"] == "accuracy"
    problems = check_benchmark_files(benchmarks)
    assert problems[0] == (
        f"evaluation.benchmarks.MME: no file {tmp_path / 'MME.tsv'} (VLMEvalKit's dataset MME)"
    )
    assert problems[1].startswith("evaluation.benchmarks.own: no file /nowhere/own.jsonl")
    assert "build_dataset(name) for name in ('MME',)" in problems[2]
    assert len(problems) == 3
    judged = resolved_benchmarks({"data_dir": None, "benchmarks": {"MMVet": {
        "path": "MMVet.tsv", "format": "vlmevalkit"}}})  # fmt: skip
    assert judge_problems(judged, {"model": None})[0].startswith("evaluation.judge.model")
    assert judge_problems(judged, {"model": "some/model"}) == []


def test_the_table_shows_each_benchmarks_own_metric_the_average_and_the_papers() -> None:
    def summary(metric: str, scores: list[float], percents: list[float]) -> dict:
        turns = [
            {"turn": t, "items": 4, "correct": 0, "accuracy": 0.0, "wrong": 0,
             "no_conclusion": 0, "no_option": 0, "gained": 0, "lost": 0, "score": s,
             "percent": p, "parts": {}}
            for t, (s, p) in enumerate(zip(scores, percents, strict=True))
        ]  # fmt: skip
        return {"metric": metric, "turns": turns, "malformed_rows": 1}

    rows = accuracy_rows(summary("mme", [1400.0, 1540.0], [50.0, 55.0]), "iter2", "MME")
    rows += accuracy_rows(summary("accuracy", [60.0, 65.0], [60.0, 65.0]), "iter2", "MMStar")
    frame = accuracy_frame(rows, ["base", "iter2"])
    assert set(frame["malformed_rows"]) == {1} and json.loads(frame["parts"][0]) == {}
    table = paper_table(frame, PAPER_AVERAGES)
    assert table.loc["iter2", ("MME", "direct")] == 1400.0  # MME in its own unit
    assert table.loc["iter2", ("MME", "self-corrected")] == 1540.0
    assert table.loc["iter2", ("average", "direct")] == 55.0  # (50 + 60) / 2
    assert table.loc["iter2", ("average", "change")] == 5.0
    assert table.loc["iter2", ("paper (average)", "direct")] == 64.1
    assert table.loc["iter2", ("paper (average)", "self-corrected")] == 65.4
    assert "paper (average)" not in paper_table(frame).columns.get_level_values(0)


def says_only(folder: Path, token: str) -> None:
    """Rewrite the tiny Qwen2-VL in ``folder`` so that, greedily, it answers every prompt with
    ``token`` and stops: its layers add nothing (each position holds its token's embedding),
    every token's embedding points to ``token``, ``token``'s own to the end of the turn."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    word, end = tokenizer.convert_tokens_to_ids(token), tokenizer.eos_token_id
    text = model.model.language_model
    with torch.no_grad():
        for layer in text.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        text.norm.weight.fill_(1.0)
        embed = text.embed_tokens.weight
        embed[:, -2:] = 0.0
        embed[:, -2] = 1.0
        embed[word] = 0.0
        embed[word, -1] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[word, -2] = 10.0
        model.lm_head.weight[end, -1] = 10.0
    model.save_pretrained(folder)


@pytest.mark.workflow
def test_an_outside_model_is_evaluated_on_a_vlmevalkit_file_untrained_end_to_end(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """`evaluate_models` with one VLMEvalKit file (3 good rows, 3 malformed) and an outside
    model folder: the tiny model made to answer " red" to everything, never in the four-stage
    format. The file is converted once, answered and corrected, scored, its prediction files
    written, the table built; nothing is trained, and the model is scored by what it says
    (answers read with auto), not as zero."""
    import shutil
    import subprocess
    import sys

    import yaml

    from sherlock.evaluation.scoring import NO_CONCLUSION

    root = Path(__file__).resolve().parents[1]
    data = tmp_path / "LMUData"
    data.mkdir()
    write_tsv(data / "MMStar.tsv", MCQ_ROWS)
    outside = tmp_path / "says_red"
    shutil.copytree(tiny_model_dir, outside)
    says_only(outside, "Ġred")
    overrides = {
        "synthetic": {"n_train": 40, "n_test": 6},
        "evaluation": {
            "rounds": 1,
            "max_items": 2,
            "data_dir": str(data),
            "benchmarks": {"mmstar": {"path": "MMStar.tsv", "format": "vlmevalkit"}},
            "models": {"says_red": str(outside)},
        },
    }
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(overrides))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "--directory",
         str(tmp_path), "--cores", "2", "evaluate_models", "--configfile", "one.yaml"],
        capture_output=True, text=True, cwd=tmp_path, timeout=900,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert not (tmp_path / "results" / "models").exists()  # nothing trained, no base built
    results = tmp_path / "results" / "eval"
    conversion = json.loads((results / "benchmarks" / "mmstar_conversion.json").read_text())
    assert conversion["items"] == 3 and conversion["malformed_rows"] == 3
    summary = json.loads((results / "mmstar" / "says_red_scores.json").read_text())
    assert summary["metric"] == "accuracy" and summary["malformed_rows"] == 3
    assert summary["items"] == 2 and summary["items_in_file"] == 3
    assert summary["answer_from"] == "auto" and summary["model"] == str(outside)
    # " red" read as VLMEvalKit reads it: the option whose text it holds (row 1: red, blue)
    rows = json.loads((results / "mmstar" / "says_red_responses.json").read_text())
    assert [row["turns"] for row in rows] == [[" red", " red"]] * 2
    assert [row["statuses"] for row in rows] == [["correct"] * 2, ["no_option"] * 2]
    assert [t["score"] for t in summary["turns"]] == [50.0, 50.0]
    assert [t["no_format"] for t in summary["turns"]] == [1.0, 1.0]
    # read for a CONCLUSION only, the same answers would all be "no conclusion"
    items = {item.id: item for item in read_benchmark(results / "benchmarks" / "mmstar.jsonl")}
    strict = [score_turns(items[row["id"]], row["turns"], "conclusion") for row in rows]
    assert {status for row in strict for status in row["statuses"]} == {NO_CONCLUSION}
    # the held-out questions (exact match): right exactly where the answer is red
    lines = (results / "benchmarks" / "heldout.jsonl").read_text().splitlines()
    answers = [json.loads(line)["answer"] for line in lines][:2]
    rows = json.loads((results / "heldout" / "says_red_responses.json").read_text())
    assert [row["statuses"][0] == "correct" for row in rows] == [a == "red" for a in answers]
    # VLMEvalKit's prediction files: the text read, per turn
    for turn in (0, 1):
        predictions = read_predictions(
            results / "vlmevalkit" / "mmstar" / "says_red"
            / prediction_file_name("says_red", "MMStar", turn)
        )  # fmt: skip
        assert predictions["index"].tolist() == ["1", "2"]
        assert predictions["prediction"].str.strip().tolist() == ["red"] * 2
    # the outside models' own table
    table = pd.read_parquet(results / "models" / "accuracy.parquet")
    assert set(table["checkpoint"]) == {"says_red"} and set(table["answer_from"]) == {"auto"}
    assert set(table["benchmark"]) == {"heldout", "mmstar"} and set(table["no_format"]) == {1.0}
    page = (results / "models" / "accuracy_table.html").read_text()
    assert "mmstar: accuracy %, 3 malformed rows not evaluated" in page
    assert "[sherlock] benchmark " in log and "3 malformed, not evaluated" in log
    assert "[sherlock] evaluate says_red on mmstar: " in log


def test_the_judge_job_runs_a_local_text_model_over_the_open_answers(
    tmp_path: Path, tiny_text_model_dir: Path
) -> None:
    """The judge job's plumbing on a tiny random text model (its verdicts mean nothing)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    tsv = write_tsv(
        tmp_path / "MMVet.tsv",
        [
            {"index": 1, "image": picture("red"), "question": "Colour?", "answer": "red"},
            {"index": 2, "image": picture("blue"), "question": "Colour?", "answer": "blue"},
        ],
    )
    out = tmp_path / "MMVet.jsonl"
    convert(tsv, out, tmp_path / "img", "judge")
    rows = scored(out, {"1": ["It is red.", None], "2": ["blue", "blue"]})
    summary = {"turns": [{"turn": 0}, {"turn": 1}]}
    (tmp_path / "responses.json").write_text(json.dumps(rows))
    before = {
        "checkpoint": "base", "benchmark": "MMVet", "model": "m", "benchmark_file": str(out),
        "items_in_file": 2, "malformed_rows": 0, "rounds": 1, "metric": "judge", **summary,
    }  # fmt: skip
    (tmp_path / "scores.json").write_text(json.dumps(before))
    result = subprocess.run(
        [sys.executable, str(root / "workflow_scripts" / "judge_open_answers.py"),
         "--responses", str(tmp_path / "responses.json"), "--scores",
         str(tmp_path / "scores.json"), "--judge-model", str(tiny_text_model_dir),
         "--judge-max-new-tokens", "4", "--seed", "1", "--output", str(tmp_path / "judged.json"),
         "--summary", str(tmp_path / "judged_scores.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    judged = json.loads((tmp_path / "judged.json").read_text())
    assert [len(row["judged"]) for row in judged] == [2, 2]
    assert judged[0]["statuses"][1] == "no_conclusion" and judged[0]["judged"][1] is None
    scores = json.loads((tmp_path / "judged_scores.json").read_text())
    assert scores["metric"] == "judge" and "not VLMEvalKit's GPT judge" in scores["judge"]
    assert scores["judge_model"] == str(tiny_text_model_dir)
    assert [turn["turn"] for turn in scores["turns"]] == [0, 1]


def test_the_paper_preset_lists_the_papers_eight_benchmarks_by_vlmevalkits_names() -> None:
    import yaml

    from sherlock.evaluation.published import PAPER_BENCHMARKS

    root = Path(__file__).resolve().parents[1]
    preset = yaml.safe_load((root / "config" / "presets" / "paper_llama32v.yaml").read_text())
    evaluation = preset["evaluation"]
    benchmarks = resolved_benchmarks(evaluation)
    assert sorted(Path(b["path"]).stem for b in benchmarks.values()) == sorted(PAPER_BENCHMARKS)
    assert {b["format"] for b in benchmarks.values()} == {"vlmevalkit"}
    assert all(b["path"].startswith(evaluation["data_dir"]) for b in benchmarks.values())
    metrics = {name: b["metric"] for name, b in benchmarks.items()}
    assert metrics == {
        "MMBench": "mmbench", "MMStar": "accuracy", "MMMU": "mmmu", "MathVista": "judge",
        "HallusionBench": "hallusionbench", "AI2D": "accuracy", "MMVet": "judge", "MME": "mme",
    }  # fmt: skip
    assert evaluation["compare_with_paper"] and evaluation["judge"]["model"]


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("MME", "mme"), ("HallusionBench", "hallusionbench"), ("POPE", "pope"),
        ("AMBER", "amber"), ("VSR-zeroshot", "vsr"), ("MMBench_DEV_CN_V11", "mmbench"),
        ("CCBench", "mmbench"), ("BLINK_circular", "mmbench"), ("MMCR", "mmbench"),
        ("MMVP", "mmvp"), ("MMMU_DEV_VAL", "mmmu"), ("MathVista_MINI", "judge"),
        ("MMVet", "judge"), ("MMStar", "accuracy"), ("BLINK", "accuracy"),
        ("MMERealWorld", "accuracy"),
    ],
)  # fmt: skip
def test_each_vlmevalkit_file_gets_its_own_metric_by_name(name: str, metric: str) -> None:
    assert metric_for(f"/data/{name}.tsv", "vlmevalkit", None) == metric
    assert metric_for(f"/data/{name}.jsonl", "jsonl", None) == "accuracy"


def yes_no_file(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """(index, answer, category) rows of a yes/no file."""
    return write_tsv(path, [
        {"index": index, "image": picture("white"), "question": "Is there a dog?",
         "answer": answer, "category": category}
        for index, answer, category in rows
    ])  # fmt: skip


def test_pope_is_f1_of_yes_with_accuracy_precision_recall_overall_and_per_category(
    tmp_path: Path,
) -> None:
    # (index, answer, category, said): r6 belongs to two categories (VLMEvalKit explodes it,
    # overall too); r5 says neither word, which counts as "No" for F1 and wrong for accuracy
    cases = [
        ("1", "Yes", "adversarial", "Yes"),  # true yes
        ("2", "Yes", "adversarial", "No"),  # missed yes
        ("3", "No", "popular", "Yes"),  # false yes
        ("4", "No", "popular", "No"),  # true no
        ("5", "Yes", "random", "I cannot tell"),  # missed yes
        ("6", "No", "adversarial,popular", "Yes"),  # false yes, twice
        ("7", "No", "random", "No"),  # true no
    ]
    tsv = yes_no_file(tmp_path / "POPE.tsv", [(i, a, c) for i, a, c, _ in cases])
    metric = metric_for(str(tsv), "vlmevalkit", None)
    convert(tsv, tmp_path / "pope.jsonl", tmp_path / "img", metric)
    rows = scored(tmp_path / "pope.jsonl", {i: [said] for i, _, _, said in cases})
    scores = turn_scores(rows, metric, 0)
    # 8 exploded rows: 1 true yes, 3 false yes (3, 6, 6), 2 missed (2, 5), 2 true no; 3 right
    precision, recall = 100 / 4, 100 / 3
    assert scores["precision"] == pytest.approx(precision)
    assert scores["recall"] == pytest.approx(recall)
    assert scores["score"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert scores["score"] == pytest.approx(200 / 7)
    assert scores["acc"] == pytest.approx(100 * 3 / 8)
    categories = scores["categories"]
    assert set(categories) == {"adversarial", "popular", "random"}
    # adversarial: 1, 2, 6 -> one true yes, one missed, one false yes
    assert categories["adversarial"] == pytest.approx(
        {"f1": 50.0, "precision": 50.0, "recall": 50.0, "acc": 100 / 3})
    # popular: 3, 4, 6 -> no true yes: precision 0 of 2, recall undefined (0)
    assert categories["popular"] == pytest.approx(
        {"f1": 0.0, "precision": 0.0, "recall": 0.0, "acc": 100 / 3})
    assert categories["random"] == pytest.approx(
        {"f1": 0.0, "precision": 0.0, "recall": 0.0, "acc": 50.0})


def test_amber_vsr_and_mmvp_scores_by_hand(tmp_path: Path) -> None:
    amber = yes_no_file(tmp_path / "AMBER.tsv", [
        ("1", "yes", "discriminative-attribute-state"),
        ("2", "no", "discriminative-attribute-number"),
        ("3", "yes", "discriminative-hallucination"), ("4", "no", "discriminative-hallucination"),
        ("5", "yes", "relation"),
    ])  # fmt: skip
    convert(amber, tmp_path / "amber.jsonl", tmp_path / "img", "amber")
    rows = scored(tmp_path / "amber.jsonl",
                  {"1": ["Yes"], "2": ["Yes"], "3": ["yes"], "4": ["No"], "5": ["No"]})  # fmt: skip
    scores = turn_scores(rows, "amber", 0)
    # Attribute 1 of 2, Existence 2 of 2, Relation 0 of 1; lower-case answers are AMBER's own
    assert scores["categories"] == {"Attribute": 50.0, "Existence": 100.0, "Relation": 0.0}
    assert scores["score"] == pytest.approx(50.0)
    assert vlmevalkit_differences(rows, "amber") == {}

    vsr = yes_no_file(tmp_path / "VSR-zeroshot.tsv",
                      [(str(i), a, "") for i, a in enumerate(["Yes", "No", "Yes", "No", "Yes"])])
    convert(vsr, tmp_path / "vsr.jsonl", tmp_path / "img", "vsr")
    said = {"0": ["Yes"], "1": ["Yes"], "2": ["No"], "3": ["No"], "4": ["Maybe"]}
    scores = turn_scores(scored(tmp_path / "vsr.jsonl", said), "vsr", 0)
    assert scores["score"] == 40.0  # accuracy: rows 0 and 3
    assert scores["precision"] == 50.0 and scores["recall"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(40.0)

    mmvp = write_tsv(tmp_path / "MMVP.tsv", [
        {"index": index, "image": picture("red"), "question": "Colour?", "A": "red",
         "B": "blue", "answer": "A"}
        for index in (3, 1, 5, 2, 4)
    ])  # fmt: skip
    convert(mmvp, tmp_path / "mmvp.jsonl", tmp_path / "img", "mmvp")
    said = {"1": ["A"], "2": ["A"], "3": ["A"], "4": ["B"], "5": ["A"]}
    rows = scored(tmp_path / "mmvp.jsonl", said)
    scores = turn_scores(rows, "mmvp", 0)
    # pairs in index order: (1, 2) both right, (3, 4) not; 5 has no partner
    assert (scores["score"], scores["average"]) == (50.0, 80.0)
    assert vlmevalkit_differences(rows, "mmvp") == {"mmvp_unpaired": 1}


def test_a_circular_copy_without_its_original_is_not_scored_but_counted(tmp_path: Path) -> None:
    rows = [
        {"index": index, "image": picture("red"), "question": "Colour?", "A": "red",
         "B": "blue", "answer": "A"}
        for index in (7, 1_000_007, 1_000_008, 9)
    ]  # fmt: skip
    tsv = write_tsv(tmp_path / "CCBench.tsv", rows)
    metric = metric_for(str(tsv), "vlmevalkit", None)
    convert(tsv, tmp_path / "cc.jsonl", tmp_path / "img", metric)
    said = {"7": ["A"], "1000007": ["(A)"], "1000008": ["A"], "9": ["B"]}
    rows = scored(tmp_path / "cc.jsonl", said)
    scores = turn_scores(rows, metric, 0)
    assert (scores["score"], scores["questions"]) == (50.0, 2)  # 7 right, 9 wrong; 8 absent
    assert vlmevalkit_differences(rows, metric) == {"circular_copies_without_original": 1}


def test_layout_differences_from_vlmevalkit_are_counted(tmp_path: Path) -> None:
    mcq = write_tsv(tmp_path / "MMStar.tsv", [
        {"index": 1, "image": picture("red"), "question": "Which?", "A": "cat", "B": "dog",
         "C": "None", "answer": "C"},
        {"index": 2, "image": picture("red"), "question": "Which?", "A": "cat", "B": "dog",
         "C": "", "answer": "dog"},
        {"index": 3, "image": picture("red"), "question": "Which?", "A": "cat", "B": "dog",
         "C": "", "answer": "A"},
    ])  # fmt: skip
    convert(mcq, tmp_path / "mcq.jsonl", tmp_path / "img", "accuracy")
    items = read_benchmark(tmp_path / "mcq.jsonl")
    assert items[0].choices == ("cat", "dog", "None")  # the file's text, kept
    assert items[1].answer == "B"  # an option's text, taken as its letter
    rows = scored(tmp_path / "mcq.jsonl", {"1": ["C"], "2": ["B"], "3": ["A"]})
    assert [row["statuses"][0] for row in rows] == ["correct"] * 3
    assert vlmevalkit_differences(rows, "accuracy") == {
        "answer_not_a_letter_as_written": 1, "option_cells_pandas_drops": 1}  # fmt: skip

    mme = write_tsv(tmp_path / "MME.tsv", [
        {"index": i, "image": picture("red"), "question": "Red?", "answer": "Yes",
         "category": "color"} for i in (1, 2)
    ])  # fmt: skip
    convert(mme, tmp_path / "mme.jsonl", tmp_path / "img", "mme")
    rows = scored(tmp_path / "mme.jsonl", {"1": ["Yes"], "2": ["Yes"]})
    assert vlmevalkit_differences(rows, "mme") == {"mme_pairs_by_picture": 2}

    hallusion = write_tsv(tmp_path / "HallusionBench.tsv", [
        {"index": "VS_chart_0_1_0_0", "image": picture("red"), "question": "Red?",
         "answer": "Yes", "set_id": "1", "figure_id": "0", "question_id": "0"},
        {"index": "VS_chart_1_1_0_1", "image": picture("red"), "question": "Red?",
         "answer": "No", "set_id": "9", "figure_id": "9", "question_id": "9"},
        {"index": "extra", "image": picture("red"), "question": "Red?", "answer": "No",
         "set_id": "2", "figure_id": "0", "question_id": "0"},
    ])  # fmt: skip
    convert(hallusion, tmp_path / "hb.jsonl", tmp_path / "img", "hallusionbench")
    rows = scored(tmp_path / "hb.jsonl", {"VS_chart_0_1_0_0": ["Yes"], "VS_chart_1_1_0_1": ["No"],
                                           "extra": ["No"]})  # fmt: skip
    # the index decides, as in VLMEvalKit: the second row is set 1, figure 0, question 1
    assert turn_scores(rows, "hallusionbench", 0)["fAcc"] == 100.0  # figures (1,0), (2,0)
    assert vlmevalkit_differences(rows, "hallusionbench") == {
        "hallusion_id_columns_ignored": 1, "hallusion_ids_from_columns": 1}  # fmt: skip


def test_prediction_files_hold_the_text_our_scoring_read(tmp_path: Path) -> None:
    tsv = write_tsv(tmp_path / "MMStar.tsv", MCQ_ROWS[:2])
    convert(tsv, tmp_path / "MMStar.jsonl", tmp_path / "img", "accuracy")
    rows = scored(tmp_path / "MMStar.jsonl", {"1": ["A"], "2": [None]})
    rows[1]["turns"][0] = "The answer is A."  # no format at all
    for mode, expected in [
        ("auto", ["A", "The answer is A."]),
        ("conclusion", ["A", "The answer is A."]),
        ("response", [respond("A"), "The answer is A."]),
    ]:
        path = tmp_path / f"{mode}.tsv"
        write_predictions(path, rows, 0, mode)
        assert read_predictions(path)["prediction"].tolist() == expected
