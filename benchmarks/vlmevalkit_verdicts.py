"""VLMEvalKit's own verdicts on the response-forms table (tests/data/answer_forms.tsv), recomputed
by running its rule-based answer reading (the ``exact_matching`` path: no GPT judge) from a
VLMEvalKit checkout, and, with ``--cross-check``, its POPE, MME, HallusionBench and MCQ scores on
prediction files our evaluation writes, beside ours.

    git clone https://github.com/open-compass/VLMEvalKit /tmp/VLMEvalKit
    .venv/bin/python benchmarks/vlmevalkit_verdicts.py --vlmevalkit /tmp/VLMEvalKit
    .venv/bin/python benchmarks/vlmevalkit_verdicts.py --vlmevalkit /tmp/VLMEvalKit --check
    .venv/bin/python benchmarks/vlmevalkit_verdicts.py --vlmevalkit /tmp/VLMEvalKit --cross-check

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vlmevalkit", type=Path, required=True, help="a VLMEvalKit checkout")
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args()
    kit = load_vlmevalkit(args.vlmevalkit)
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
