"""VLMEvalKit's own verdicts on the response-forms table (tests/data/answer_forms.tsv), recomputed
by running its rule-based answer reading (the ``exact_matching`` path: no GPT judge) from a
VLMEvalKit checkout, and, with ``--cross-check``, its POPE, MME, HallusionBench and MCQ scores on
prediction files our evaluation writes, beside ours.

    git clone https://github.com/open-compass/VLMEvalKit /tmp/VLMEvalKit
    .venv/bin/python benchmarks/vlmevalkit_verdicts.py --vlmevalkit /tmp/VLMEvalKit
    .venv/bin/python benchmarks/vlmevalkit_verdicts.py --vlmevalkit /tmp/VLMEvalKit --check
    .venv/bin/python benchmarks/vlmevalkit_verdicts.py --vlmevalkit /tmp/VLMEvalKit \
        --cross-check /tmp/vlmevalkit_cross_check

Only pandas and numpy are needed: VLMEvalKit's package ``__init__`` (which imports its model
zoo) is skipped; the few modules that hold its answer reading and metrics are loaded from their
files, with the helpers they import from ``vlmeval.smp`` taken from its own ``misc.py`` and its
``load`` for a .tsv (``pd.read_csv(path, sep='\\t')``, pandas' default missing values).

Without ``--check`` the table's ``vlmevalkit`` column and its header's commit line are rewritten;
with ``--check`` nothing is written and the script fails when a stored verdict differs. The tests
read the stored verdicts and never need VLMEvalKit.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import logging
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "tests" / "data" / "answer_forms.tsv"
NONE = "none"  # a row VLMEvalKit (or we) read no answer from


def _module(name: str, path: Path | None = None, **attributes) -> types.ModuleType:
    """A module in sys.modules: loaded from ``path``, or empty with ``attributes``."""
    if path is None:
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so submodules can be registered under it
    else:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    if path is not None:
        spec.loader.exec_module(module)
    return module


def load_vlmevalkit(checkout: Path) -> types.SimpleNamespace:
    """VLMEvalKit's answer reading and yes/no and multiple-choice metrics, from its files."""
    source = checkout / "vlmeval"
    if not (source / "utils" / "matching_util.py").is_file():
        sys.exit(f"error: {checkout}: no vlmeval/utils/matching_util.py (not VLMEvalKit)")
    # misc.py imports these at the top for helpers we never call
    if importlib.util.find_spec("sty") is None:
        _module("sty", fg=None)
    try:
        import huggingface_hub.utils._cache_manager  # noqa: F401
    except ImportError:
        _module("huggingface_hub")
        _module("huggingface_hub.utils")
        _module("huggingface_hub.utils._cache_manager", _scan_cached_repo=None)
    _module("vlmeval")
    smp = _module("vlmeval.smp")
    _module("vlmeval.smp.log", get_logger=logging.getLogger)
    misc = _module("vlmeval.smp.misc", source / "smp" / "misc.py")
    vlm = _module("vlmeval.smp.vlm", source / "smp" / "vlm.py")
    smp.__dict__.update(
        process_punctuation=misc.process_punctuation,
        d2df=misc.d2df,
        cn_string=misc.cn_string,
        istype=misc.istype,
        listinstr=misc.listinstr,
        timestr=misc.timestr,
        get_logger=logging.getLogger,
        load=lambda path, fmt=None: pd.read_csv(path, sep="\t"),
        dump=lambda data, path: data.to_csv(path, sep="\t", index=False),
        get_pred_file_format=lambda: "tsv",
    )
    _module("vlmeval.utils")
    matching = _module("vlmeval.utils.matching_util", source / "utils" / "matching_util.py")
    sys.modules["vlmeval.utils"].__dict__.update(
        can_infer=matching.can_infer,
        can_infer_lego=matching.can_infer_lego,
        track_progress_rich=None,
    )
    _module("vlmeval.dataset")
    _module("vlmeval.dataset.utils")
    yorn = _module("vlmeval.dataset.utils.yorn", source / "dataset" / "utils" / "yorn.py")
    mcq = _module(
        "vlmeval.dataset.utils.multiple_choice", source / "dataset" / "utils" / "multiple_choice.py"
    )
    return types.SimpleNamespace(
        can_infer=matching.can_infer,
        extract_answer_from_item=mcq.extract_answer_from_item,
        mmmu_preproc=mcq.MMMU_preproc,
        yes_no=yorn.YOrN_Extraction,
        pope=yorn.POPE_rating,
        mme=yorn.MME_rating,
        hallusion=yorn.Hallusion_rating,
        build_option_str=vlm.build_option_str,
    )


def commit_of(checkout: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"error: {checkout}: not a git checkout, so its commit is unknown")
    return result.stdout.strip()


# --- the forms table ----------------------------------------------------------------------

OPTION_COLUMNS = tuple("ABCDE")


def header_and_frame(path: Path, vlmevalkit_view: bool) -> tuple[list[str], pd.DataFrame]:
    """The table's '#' header lines and its rows: every cell as text (ours), or as VLMEvalKit's
    ``load`` reads a TSV (pandas' defaults: "None", "NA" or an empty cell is missing)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    body = "".join(lines[len(header) :])
    if vlmevalkit_view:
        return header, pd.read_csv(io.StringIO(body), sep="\t")
    return header, pd.read_csv(io.StringIO(body), sep="\t", dtype=str, keep_default_na=False)


def vlmevalkit_reading(kit: types.SimpleNamespace, row: pd.Series) -> str:
    """What VLMEvalKit's exact-matching evaluation reads from one row's response: an option
    letter, "Z" (none of them), "Yes"/"No", or "none"."""
    prediction = str(row["response"])  # as its evaluate() does
    if row["kind"] == "yes_no":
        said = kit.yes_no(prediction)
        return NONE if said == "Unknown" else said
    item = row.copy()
    item["prediction"] = prediction
    item["question"] = "?"
    if row["kind"] == "open":  # MMMU: an open question becomes the answer vs "Other Answers"
        item = kit.mmmu_preproc(pd.DataFrame([item])).iloc[0]
    choices = {c: item[c] for c in OPTION_COLUMNS if c in item and not pd.isna(item[c])}
    read = kit.can_infer(prediction, choices)
    # the whole exact-matching path (options from the row, no judge) must agree with can_infer
    opt = kit.extract_answer_from_item(None, item)["opt"]
    if opt != (read or "Z"):
        raise AssertionError(f"row {row.name}: can_infer read {read!r}, the evaluation {opt!r}")
    return read or NONE


def our_reading(row: pd.Series) -> str:
    """What our reading takes from one row's response (the same values as VLMEvalKit's)."""
    from sherlock.evaluation.answers import open_choice, read_option, read_yes_no

    text = row["response"]
    if row["kind"] == "yes_no":
        return read_yes_no(text) or NONE
    if row["kind"] == "open":
        return open_choice(text, row["answer"]) or NONE
    options = [row[c] for c in OPTION_COLUMNS if row.get(c, "")]
    return read_option(text, options) or NONE


# --- cross-check: VLMEvalKit's metrics on the prediction files we write ---------------------

FORMS = ["{a}", "**{a}**", "The answer is {a}.", "{a}, because the picture shows it clearly.",
         "<SUMMARY>s</SUMMARY><CAPTION>c</CAPTION><REASONING>r</REASONING><CONCLUSION>{a}"
         "</CONCLUSION>", "I cannot tell."]  # fmt: skip
UNREAD = "I cannot tell."  # a prediction neither reading takes anything from
MME_TASKS = ("OCR", "artwork", "celebrity", "color", "count", "existence", "landmark",
             "position", "posters", "scene", "code_reasoning", "commonsense_reasoning",
             "numerical_calculation", "text_translation")  # fmt: skip


def _picture() -> str:
    import base64

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _yes_no_rows(count: int, layout: str) -> list[dict]:
    """Rows of a yes/no file in a dataset's layout; every other answer Yes."""
    import random

    rng = random.Random(count)
    rows = []
    for i in range(count):
        row = {"index": i + 1, "question": "Is it there?", "answer": "Yes" if i % 2 else "No",
               "image": _picture() if i == 0 else "1"}  # fmt: skip
        if layout == "POPE":
            row["category"] = rng.choice(["adversarial", "popular", "random", "popular,random"])
        elif layout == "MME":  # its rating needs all 14 subtasks: pairs of questions in turn
            row.update(category=MME_TASKS[(i // 2) % len(MME_TASKS)], image_path=f"{i // 2}.jpg")
        else:  # HallusionBench: <category>_<subcategory>_<n>_<set>_<figure>_<question>
            row.update(index=f"VS_chart_{i}_{i // 4}_{(i // 2) % 2}_{i % 2}", image=_picture(),
                       category="VS", **{"l2-category": "chart"})  # fmt: skip
        rows.append(row)
    return rows


def _mmbench_rows(groups: int) -> list[dict]:
    """Questions with their three option-shifted copies (index + k·10⁶), answer: blue."""
    colours = ["red", "green", "blue", "grey"]
    return [
        {"index": g + k * 1_000_000, "question": "Colour?", "image": _picture(),
         **dict(zip("ABCD", colours[k:] + colours[:k], strict=True)),
         "answer": "ABCD"[(2 - k) % 4], "category": "c"}
        for g in range(groups) for k in range(4)
    ]  # fmt: skip


def _answered(tsv: Path, metric: str, folder: Path, seed: int) -> list[dict]:
    """The file converted, each row answered in one of FORMS (auto reading), scored by us."""
    import random

    from sherlock.evaluation.benchmark_files import read_benchmark
    from sherlock.evaluation.evaluate import score_turns
    from sherlock.evaluation.vlmevalkit import convert

    rng = random.Random(seed)
    convert(tsv, folder / f"{tsv.stem}.jsonl", folder / f"{tsv.stem}_images", metric)
    rows = []
    for item in read_benchmark(folder / f"{tsv.stem}.jsonl"):
        if item.choices:
            said = item.answer if rng.random() < 0.7 else rng.choice("ABCD"[: len(item.choices)])
        else:
            said = item.answer if rng.random() < 0.6 else {"Yes": "No", "No": "Yes"}[item.answer]
        rows.append(score_turns(item, [rng.choice(FORMS).format(a=said)]))
    return rows


def _vlmevalkit_only(rows: list[dict]) -> list[dict]:
    """The rows scored by our copy of VLMEvalKit's reading alone (``answers.vlmevalkit_*``)."""
    from sherlock.evaluation.answers import answer_text, vlmevalkit_option, vlmevalkit_yes_no

    out = []
    for row in rows:
        text = answer_text(row["turns"][0], "auto")
        choices = row["choices"]
        said = vlmevalkit_option(text, choices) if choices else vlmevalkit_yes_no(text)
        right = said == row["answer"]
        out.append({**row, "predictions": [said], "statuses": ["correct" if right else "wrong"]})
    return out


def _prediction_file(rows: list[dict], path: Path, verdicts: bool) -> Path:
    """Our prediction file of the rows; with ``verdicts``, each prediction replaced by what we
    read (a letter, Yes or No; UNREAD for nothing), so VLMEvalKit reads exactly our verdicts."""
    from sherlock.evaluation.vlmevalkit import write_predictions

    if verdicts:
        rows = [{**row, "turns": [row["predictions"][0] or UNREAD]} for row in rows]
    write_predictions(path, rows, 0)
    return path


def _their_yes_no(kit: types.SimpleNamespace, predictions: Path) -> str:
    """VLMEvalKit's yes/no evaluation of a prediction file up to its rating (exact matching):
    the extracted and score columns, as ImageYORNDataset.evaluate writes them."""
    data = pd.read_csv(predictions, sep="\t")
    data["prediction"] = [str(x) for x in data["prediction"]]
    data["extracted"] = [kit.yes_no(x) for x in data["prediction"]]
    data["score"] = data["answer"] == data["extracted"]
    storage = predictions.with_name(predictions.stem + "_auxmatch.tsv")
    data.to_csv(storage, sep="\t", index=False)
    return str(storage)


def _their_metric(kit: types.SimpleNamespace, metric: str, predictions: Path) -> dict:
    """VLMEvalKit's numbers (by our names) for a prediction file."""
    if metric == "mmbench":
        from vlmeval.dataset.utils.multiple_choice import eval_circular_group

        data = pd.read_csv(predictions, sep="\t")
        data["prediction"] = [str(x) for x in data["prediction"]]
        data["GT"] = data["answer"]
        groups = data["index"] % 1_000_000
        hits = [eval_circular_group(None, data[groups == g])["hit"] for g in sorted(set(groups))]
        return {"score": 100 * sum(hits) / len(hits)}
    storage = _their_yes_no(kit, predictions)
    if metric == "pope":
        table = kit.pope(storage).set_index("split")
        out = {"score": table.loc["Overall", "Overall"], "acc": table.loc["Overall", "acc"],
               "precision": table.loc["Overall", "precision"],
               "recall": table.loc["Overall", "recall"]}  # fmt: skip
        out.update({f"F1 {c}": table.loc[c, "Overall"] for c in table.index if c != "Overall"})
        return out
    if metric == "mme":
        table = kit.mme(storage).iloc[0]
        perception, reasoning = table["perception"], table["reasoning"]
        return {"score": perception + reasoning, "perception": perception, "reasoning": reasoning}
    table = kit.hallusion(storage).set_index("split").loc["Overall"]
    return {name: table[name] for name in ("aAcc", "fAcc", "qAcc")}


def _ours(rows: list[dict], metric: str) -> dict:
    from sherlock.evaluation.metrics import turn_scores

    scores = turn_scores(rows, metric, 0)
    scores.update({f"F1 {c}": v["f1"] for c, v in scores.get("categories", {}).items()})
    return scores


def cross_check(kit: types.SimpleNamespace, folder: Path) -> list[str]:
    """Per benchmark layout and number: VLMEvalKit's metric and ours on the same verdicts (ours,
    handed to it as the prediction), then VLMEvalKit on our prediction file as written beside our
    metric on our copy of its reading, then our score: what our reading adds."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    cases = [("POPE", "pope", _yes_no_rows(60, "POPE")), ("MME", "mme", _yes_no_rows(56, "MME")),
             ("HallusionBench", "hallusionbench", _yes_no_rows(48, "HallusionBench")),
             ("MMBench_DEV_EN_V11", "mmbench", _mmbench_rows(20))]  # fmt: skip
    for layout, metric, table in cases:
        tsv = folder / f"{layout}.tsv"
        pd.DataFrame(table).to_csv(tsv, sep="\t", index=False)
        rows = _answered(tsv, metric, folder, seed=len(table))
        ours = _ours(rows, metric)
        same_verdicts = _their_metric(
            kit, metric, _prediction_file(rows, folder / f"verdicts_{layout}.tsv", True)
        )
        their_reading = _their_metric(
            kit, metric, _prediction_file(rows, folder / f"model_{layout}.tsv", False)
        )
        our_copy = _ours(_vlmevalkit_only(rows), metric)
        for name, value in same_verdicts.items():
            agree = max(abs(ours[name] - value), abs(our_copy[name] - their_reading[name])) < 1e-9
            lines.append(
                f"{layout} {name}: same verdicts ours {ours[name]:.2f} / VLMEvalKit {value:.2f};"
                f" its reading: VLMEvalKit {their_reading[name]:.2f} / our copy"
                f" {our_copy[name]:.2f}; our reading adds {ours[name] - their_reading[name]:+.2f}"
                + ("" if agree else "  DIFFERENT")
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vlmevalkit", type=Path, required=True, help="a VLMEvalKit checkout")
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    parser.add_argument(
        "--cross-check", type=Path, default=None, metavar="FOLDER",
        help="score prediction files we write (into FOLDER) with VLMEvalKit's metrics and ours",
    )  # fmt: skip
    args = parser.parse_args()
    kit = load_vlmevalkit(args.vlmevalkit)
    if args.cross_check:
        lines = cross_check(kit, args.cross_check)
        print("\n".join(lines))
        sys.exit(1 if any("DIFFERENT" in line for line in lines) else 0)
    commit = commit_of(args.vlmevalkit)
    header, theirs = header_and_frame(args.table, vlmevalkit_view=True)
    _, frame = header_and_frame(args.table, vlmevalkit_view=False)
    verdicts = [vlmevalkit_reading(kit, row) for _, row in theirs.iterrows()]
    ours = [our_reading(row) for _, row in frame.iterrows()]
    if args.check:
        stored = zip(verdicts, ours, frame["vlmevalkit"], frame["ours"], strict=True)
        differ = [i for i, (a, b, c, d) in enumerate(stored) if (a, b) != (c, d)]
        for i in differ:
            print(f"row {i}: {frame['response'][i]!r}: VLMEvalKit {verdicts[i]}, ours {ours[i]}"
                  f" (stored: {frame['vlmevalkit'][i]}, {frame['ours'][i]})")
        print(f"{len(frame)} rows, {len(differ)} differ from the stored verdicts")
        sys.exit(1 if differ else 0)
    frame["vlmevalkit"] = verdicts
    frame["ours"] = ours
    header = [
        line if not line.startswith("# VLMEvalKit commit:") else f"# VLMEvalKit commit: {commit}\n"
        for line in header
    ]
    with args.table.open("w", encoding="utf-8") as out:
        out.writelines(header)
        frame.to_csv(out, sep="\t", index=False)
    print(f"{args.table}: {len(frame)} rows, VLMEvalKit {commit[:12]}")


if __name__ == "__main__":
    main()
