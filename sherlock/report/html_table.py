"""A pandas table as a small standalone HTML page (the report shows it in a frame)."""

from __future__ import annotations

import html
import os

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
) -> None:
    """Write ``frame`` with a title and an explanatory paragraph as one HTML file; numbers are
    right-aligned with one decimal, the row labels shown only with ``index``."""
    numeric = frame.select_dtypes("number").columns
    styler = frame.style.format(precision=1, na_rep="–").set_properties(
        subset=numeric, **{"text-align": "right"}
    )
    if not index:
        styler = styler.hide(axis="index")
    body = styler.to_html()
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h2>{html.escape(title)}</h2>"
        + (f"<p>{html.escape(intro)}</p>" if intro else "")
        + body
        + "</body></html>\n"
    )
    atomic.write_text(path, page)
