"""VLMEvalKit's dataset files (the TSVs of its ``LMUData`` folder) as benchmarks, and its
prediction files.

A dataset TSV has one row per question: ``index``, ``question``, an optional ``hint``, option
columns ``A``, ``B``, … (empty cells are absent options), ``answer`` (an option letter, Yes/No,
or free text), ``category`` / ``l2-category``, and the picture either as base64 in ``image`` or
as a file in ``image_path``. An ``image`` cell of at most 64 characters names the ``index`` of
another row that holds the picture (VLMEvalKit's convention for questions sharing an image); a
cell that reads as a list (``['…', '…']``) holds several pictures, which are put side by side in
one image, as VLMEvalKit does for models that take one image.

``convert`` turns a TSV into the workflow's benchmark JSONL (``benchmark_files``) and a folder of
decoded pictures, once; every row it cannot use is named (file, index, column, reason) and
counted in the conversion summary, never dropped silently. ``write_predictions`` writes a
checkpoint's answers of one turn as VLMEvalKit's prediction file (the dataset's columns without
the image, plus ``prediction``: the text our scoring read the answer from), which its own
evaluation reads.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import os
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from sherlock.data.chat import IMAGE_PLACEHOLDER
from sherlock.data.images import DEFAULT_MAX_PIXELS, image_problem
from sherlock.evaluation.answers import answer_text
from sherlock.evaluation.benchmark_files import EXACT, OPEN, YES_NO, write_benchmark
from sherlock.evaluation.metrics import YES_NO_METRICS
from sherlock.evaluation.yes_no import hallusion_ids
from sherlock.runtime import atomic

REFERENCE_MAX_CHARS = 64  # VLMEvalKit: an image cell this short is another row's index
_OPTION_COLUMNS = tuple(string.ascii_uppercase)
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp"}
_YES = {"yes", "1", "true"}
_NO = {"no", "0", "false"}
# The row's own columns kept for the metric (pairs, sub-tasks) and the prediction file.
_DROPPED = ("image",)


@dataclass(frozen=True)
class Malformed:
    """One row that cannot be evaluated."""

    file: str
    index: str
    column: str
    reason: str

    def line(self) -> str:
        return f"{self.file}, index {self.index}, column {self.column!r}: {self.reason}"


class _RowError(Exception):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


def read_tsv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A VLMEvalKit TSV with every cell as text (empty = ""): an option reading "None" or "NA"
    stays that text, as the file says."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def _cell(row: dict[str, str], column: str) -> str:
    return str(row.get(column, "") or "").strip()


def _choices(row: dict[str, str], columns: Sequence[str]) -> tuple[str, ...]:
    """The options A, B, … up to the first empty one; a later non-empty option is an error."""
    present = [_cell(row, c) for c in _OPTION_COLUMNS if c in columns]
    count = next((i for i, text in enumerate(present) if not text), len(present))
    if any(present[count:]):
        gap = _OPTION_COLUMNS[count]
        raise _RowError(gap, f"option {gap} is empty but a later option is not")
    if count == 1:
        raise _RowError("B", "a single option: multiple choice needs at least two")
    return tuple(present[:count])


def _answer(row: dict[str, str], choices: tuple[str, ...], kind: str) -> str:
    answer = _cell(row, "answer")
    if not answer:
        raise _RowError("answer", "missing")
    if choices:
        letters = _OPTION_COLUMNS[: len(choices)]
        if answer.upper() in letters:
            return answer.upper()
        matches = [letters[i] for i, text in enumerate(choices) if text == answer]
        if len(matches) == 1:
            return matches[0]
        raise _RowError("answer", f"{answer!r} is not an option letter {letters[0]}-{letters[-1]}")
    if kind == YES_NO:
        if answer.lower() in _YES:
            return "Yes"
        if answer.lower() in _NO:
            return "No"
        raise _RowError("answer", f"{answer!r} is not Yes or No")
    return answer


def _decode(text: str) -> tuple[bytes, str | None]:
    """A picture's bytes and its file extension (None: a format to re-encode). Only the header
    is read here; the whole picture is checked once written (``image_problem``)."""
    try:
        data = base64.b64decode(text, validate=False)
        with Image.open(io.BytesIO(data)) as image:
            return data, _EXTENSIONS.get(image.format or "")
    except Image.DecompressionBombError as error:
        raise _RowError("image", f"image too large: {error}") from None
    except (binascii.Error, ValueError, OSError) as error:
        raise _RowError("image", f"not a base64-encoded picture ({error})") from None


def _opened(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (Image.DecompressionBombError, ValueError, OSError) as error:
        raise _RowError("image", f"cannot read the picture ({error})") from None
    return image


def _side_by_side(images: list[Image.Image]) -> Image.Image:
    """Several pictures in one, left to right, bottom-padded white."""
    images = [image.convert("RGB") for image in images]
    width = sum(image.width for image in images)
    height = max(image.height for image in images)
    canvas = Image.new("RGB", (width, height), "white")
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width
    return canvas


def _pictures(cell: str) -> list[str]:
    """The base64 payloads of an image cell: one, or a list of several."""
    if cell.startswith("["):
        try:
            value = ast.literal_eval(cell)
        except (ValueError, SyntaxError):
            raise _RowError("image", "starts with '[' but is not a list of pictures") from None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise _RowError("image", "a list of pictures must hold base64 strings")
        return value
    return [cell]


class _Pictures:
    """Decodes each picture once into ``folder``; rows naming another row share its file."""

    def __init__(self, frame: pd.DataFrame, folder: Path, max_pixels: int) -> None:
        self.cells = dict(zip(frame["index"].map(str.strip), frame["image"], strict=True))
        self.folder = folder
        self.max_pixels = max_pixels
        self.written: dict[str, str] = {}
        self.failed: dict[str, str] = {}

    def holder(self, index: str) -> str:
        """The index of the row that holds this row's picture."""
        cell = self.cells[index].strip()
        if not cell:
            raise _RowError("image", "empty")
        if len(cell) > REFERENCE_MAX_CHARS:
            return index
        if cell not in self.cells:
            raise _RowError("image", f"names index {cell!r}, which no row has")
        if len(self.cells[cell].strip()) <= REFERENCE_MAX_CHARS:
            raise _RowError("image", f"names index {cell!r}, whose image is a reference too")
        return cell

    def file_of(self, index: str) -> str:
        holder = self.holder(index)
        if holder in self.failed:
            raise _RowError("image", f"the picture of index {holder!r}: {self.failed[holder]}")
        if holder not in self.written:
            try:
                self.written[holder] = self._write(holder)
            except _RowError as error:
                self.failed[holder] = error.reason
                raise
        return self.written[holder]

    def _write(self, holder: str) -> str:
        """The holder's picture as a file: its own bytes (no re-encoding) when it is one picture
        in a common format, else a PNG (several side by side, or an unusual format)."""
        decoded = [_decode(payload) for payload in _pictures(self.cells[holder].strip())]
        stem = self.folder / f"{len(self.written):06d}"
        if len(decoded) == 1 and decoded[0][1]:
            data, extension = decoded[0]
            path = stem.with_suffix(f".{extension}")
            path.write_bytes(data)
        else:
            images = [_opened(data) for data, _ in decoded]
            image = images[0] if len(images) == 1 else _side_by_side(images)
            path = stem.with_suffix(".png")
            image.save(path, format="PNG")
        problem = image_problem(path, self.max_pixels)
        if problem:
            path.unlink()
            raise _RowError("image", problem)
        return str(path)


def _image_path(row: dict[str, str], root: Path) -> str:
    cell = _cell(row, "image_path")
    if cell.startswith("["):
        raise _RowError("image_path", "several files per question: use the image column")
    path = root / cell
    problem = image_problem(path)
    if problem:
        raise _RowError("image_path", problem)
    return str(path.resolve())


def _meta(row: dict[str, str], index: str) -> dict[str, Any]:
    """The row's own columns (not the picture) for the metric and the prediction file."""
    return {
        "index": index,
        "columns": {key: value for key, value in row.items() if key not in _DROPPED},
    }


@dataclass
class Conversion:
    """What ``convert`` read and wrote."""

    file: str
    rows: int
    items: int
    pictures: int
    malformed: list[Malformed]

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["malformed_rows"] = len(self.malformed)
        out["malformed"] = [asdict(m) for m in self.malformed]
        return out

    def line(self) -> str:
        text = f"{self.items}/{self.rows} rows of {self.file} ({self.pictures} pictures decoded)"
        if self.malformed:
            text += f"; {len(self.malformed)} malformed, not evaluated: " + "; ".join(
                m.line() for m in self.malformed[:3]
            )
            text += " …" if len(self.malformed) > 3 else ""
        return text


def row_kind(metric: str) -> str:
    """The answer kind of a row without options under a benchmark's metric."""
    if metric in YES_NO_METRICS:
        return YES_NO
    return OPEN if metric == "judge" else EXACT


def convert(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    image_dir: str | os.PathLike[str],
    metric: str,
    image_root: str | os.PathLike[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Conversion:
    """Read a VLMEvalKit TSV; write the benchmark JSONL (``output``) and its pictures
    (``image_dir``, created); every unusable row named in the result."""
    path = Path(path)
    frame = read_tsv(path)
    name = str(path)
    columns = list(frame.columns)
    for required in ("index", "question", "answer"):
        if required not in columns:
            raise ValueError(f"{name}: no {required!r} column (columns: {', '.join(columns)})")
    if "image" not in columns and "image_path" not in columns:
        raise ValueError(f"{name}: neither an 'image' nor an 'image_path' column")
    folder = Path(image_dir)
    folder.mkdir(parents=True, exist_ok=True)
    root = Path(image_root) if image_root else path.parent
    pictures = _Pictures(frame, folder, max_pixels) if "image" in columns else None
    kind = row_kind(metric)
    out_folder = Path(output).parent.resolve()
    rows: list[dict[str, Any]] = []
    malformed: list[Malformed] = []
    seen: set[str] = set()
    for number, row in enumerate(frame.to_dict("records"), start=2):  # line 1: the header
        index = _cell(row, "index")
        try:
            if not index:
                raise _RowError("index", f"empty (line {number})")
            if index in seen:
                raise _RowError("index", "used by an earlier row")
            seen.add(index)
            if metric == "hallusionbench" and hallusion_ids(index, row) is None:
                raise _RowError(
                    "index", "HallusionBench needs <..>_<..>_<..>_<set>_<figure>_<question> ids"
                )
            question = _cell(row, "question")
            if not question:
                raise _RowError("question", "missing")
            question = question.replace(IMAGE_PLACEHOLDER, "").strip()
            choices = _choices(row, columns)
            answer = _answer(row, choices, kind)
            if pictures is not None and _cell(row, "image"):
                image = pictures.file_of(index)
            elif "image_path" in columns and _cell(row, "image_path"):
                image = _image_path(row, root)
            else:
                raise _RowError("image", "no picture (image and image_path empty)")
        except _RowError as error:
            malformed.append(
                Malformed(name, index or f"(line {number})", error.column, error.reason)
            )
            continue
        rows.append(
            {
                "id": index,
                "image": os.path.relpath(image, out_folder),
                "question": question,
                "answer": answer,
                **({"choices": list(choices)} if choices else {"kind": kind}),
                **({"hint": _cell(row, "hint")} if _cell(row, "hint") else {}),
                "meta": _meta(row, index),
            }
        )
    write_benchmark(output, rows)
    decoded = len(pictures.written) if pictures else 0
    return Conversion(name, len(frame), len(rows), decoded, malformed)


def prediction_file_name(model: str, dataset: str, turn: int) -> str:
    """VLMEvalKit's ``<model>_<dataset>`` name; the model is the checkpoint at one turn."""
    return f"{model}-turn{turn}_{dataset}.tsv"


def write_predictions(
    path: str | os.PathLike[str],
    rows: Sequence[dict[str, Any]],
    turn: int,
    answer_from: str = "auto",
) -> int:
    """One turn's answers as VLMEvalKit's prediction file: each evaluated row's own columns (no
    image) and ``prediction``, the text our scoring read the answer from (``answer_from``: the
    CONCLUSION, or the whole response when it has none or when ``response`` is asked; with
    ``conclusion`` and no CONCLUSION, the whole response too, which we scored as none)."""
    table = []
    for row in rows:
        response = row["turns"][turn]
        text = answer_text(response, answer_from)
        table.append({**row["meta"]["columns"], "prediction": response if text is None else text})
    frame = pd.DataFrame(table)
    with atomic.atomic_output(path) as out:
        frame.to_csv(out, sep="\t", index=False)
    return len(frame)


def read_predictions(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A prediction file as written (every cell text), as VLMEvalKit's ``load`` reads a TSV."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
