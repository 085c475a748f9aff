"""A pandas table as a small standalone HTML page (the report shows it in a frame)."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence

import pandas as pd

from sherlock.runtime import atomic

_STYLE = """
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
p { max-width: 60em; }
"""


def write_table_page(
    frame: pd.DataFrame,
    path: str | os.PathLike[str],
    title: str,
    intro: str = "",
    index: bool = True,
    more: Sequence[tuple[str, pd.DataFrame]] = (),
) -> None:
    """Write ``frame`` with a title and an explanatory paragraph as one HTML file; numbers are
    right-aligned with one decimal, the row labels shown only with ``index``. ``more``: further
    (heading, table) sections below it, without row labels."""
    body = _table_html(frame, index) + "".join(
        f"<h3>{html.escape(heading)}</h3>" + _table_html(table, index=False)
        for heading, table in more
    )
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h2>{html.escape(title)}</h2>"
        + (f"<p>{html.escape(intro)}</p>" if intro else "")
        + body
        + "</body></html>\n"
    )
    atomic.write_text(path, page)


def _table_html(frame: pd.DataFrame, index: bool) -> str:
    numeric = frame.select_dtypes("number").columns
    styler = frame.style.format(precision=1, na_rep="–").set_properties(
        subset=numeric, **{"text-align": "right"}
    )
    if not index:
        styler = styler.hide(axis="index")
    return styler.to_html()
