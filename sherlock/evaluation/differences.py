"""Rows of a VLMEvalKit file whose layout VLMEvalKit reads differently from us, counted per
evaluation (docs/evaluation.md lists each with its reason). Each count is of the evaluated rows;
a kind with no row is left out.

* ``option_cells_pandas_drops``: an option cell pandas reads as missing ("None", "NA", "N/A",
  "null", …). VLMEvalKit loads its files with pandas' defaults, so that option is neither shown
  nor readable there; we keep the text as the file writes it.
* ``answer_not_yes_no_as_written``: a yes/no row whose answer cell is not exactly "Yes" or "No"
  ("yes", "1", "True"; AMBER: not yes/no in any case). VLMEvalKit compares the cell as written,
  so such a row is never right there; we read it as Yes or No.
* ``answer_not_a_letter_as_written``: a multiple-choice row whose answer cell is not a capital
  letter (an option's text, "b"): never right in VLMEvalKit, which compares it with the letter
  read; we take that option's letter.
* ``hallusion_ids_from_columns``: a HallusionBench row whose index lacks the set, figure and
  question parts, scored by its id columns; VLMEvalKit cannot score such a file.
* ``hallusion_id_columns_ignored``: id columns that disagree with the index's parts: VLMEvalKit
  and we use the index.
* ``mme_pairs_by_picture``: an MME row without ``image_path``, paired by its picture; VLMEvalKit
  cannot score such a file.
* ``pope_without_category``: a POPE row with no category: counted overall only; VLMEvalKit
  needs the column.
* ``circular_copies_without_original``: an option-shifted copy whose original row is not
  evaluated: not scored, as in VLMEvalKit.
* ``mmvp_unpaired``: MMVP's last row when the count is odd: not scored; VLMEvalKit stops.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import pandas as pd

from sherlock.evaluation.metrics import YES_NO_METRICS, circular_group
from sherlock.evaluation.yes_no import HALLUSION_IDS

_OPTION_COLUMNS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@lru_cache(maxsize=4096)
def pandas_reads_as_missing(cell: str) -> bool:
    """Whether pandas' default reading (VLMEvalKit's ``load``) makes this cell missing."""
    if not cell or any(c in cell for c in '\t\n\r"'):
        return not cell  # quoted or multi-line text is never one of pandas' missing values
    return bool(pd.read_csv(io.StringIO(f"c\n{cell}\n"), sep="\t")["c"].isna().iloc[0])


def _columns(row: dict[str, Any]) -> dict[str, str]:
    return row.get("meta", {}).get("columns", {})


def _hallusion(row: dict[str, Any], counts: Counter) -> None:
    columns = _columns(row)
    parts = str(row.get("meta", {}).get("index", "")).split("_")
    if len(parts) < 6:
        counts["hallusion_ids_from_columns"] += 1
    elif all(columns.get(name, "") for name in HALLUSION_IDS) and tuple(
        columns[name] for name in HALLUSION_IDS
    ) != tuple(parts[3:6]):
        counts["hallusion_id_columns_ignored"] += 1


def vlmevalkit_differences(rows: Sequence[dict[str, Any]], metric: str) -> dict[str, int]:
    """How many evaluated rows each layout difference touches (only rows read from a
    VLMEvalKit file carry the columns it looks at)."""
    counts: Counter[str] = Counter()
    evaluated = {str(row.get("meta", {}).get("index", "")) for row in rows}
    for row in rows:
        columns = _columns(row)
        if not columns:
            continue
        if any(pandas_reads_as_missing(columns.get(c, "")) and columns.get(c, "").strip()
               for c in _OPTION_COLUMNS if c in columns):  # fmt: skip
            counts["option_cells_pandas_drops"] += 1
        written = columns.get("answer", "")
        if metric in YES_NO_METRICS:
            allowed = written.lower() in ("yes", "no") if metric == "amber" else written in (
                "Yes", "No")
            counts["answer_not_yes_no_as_written"] += not allowed
        elif row.get("choices") and written not in _OPTION_COLUMNS:
            counts["answer_not_a_letter_as_written"] += 1
        if metric == "hallusionbench":
            _hallusion(row, counts)
        if metric == "mme" and not columns.get("image_path"):
            counts["mme_pairs_by_picture"] += 1
        if metric == "pope" and not columns.get("category"):
            counts["pope_without_category"] += 1
        if metric == "mmbench" and circular_group(row) not in evaluated:
            counts["circular_copies_without_original"] += 1
    if metric == "mmvp" and len(rows) % 2:
        counts["mmvp_unpaired"] += 1
    return {name: count for name, count in sorted(counts.items()) if count}
