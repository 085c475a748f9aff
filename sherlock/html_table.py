"""A pandas table as a small standalone HTML page (the report shows it in a frame)."""

from __future__ import annotations

import html
import os

import pandas as pd

_STYLE = """
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
p { max-width: 60em; }
"""


def write_table_page(
    frame: pd.DataFrame, path: str | os.PathLike[str], title: str, intro: str = ""
) -> None:
    """Write ``frame`` with a title and an explanatory paragraph as one HTML file."""
    body = frame.to_html(na_rep="–", float_format=lambda v: f"{v:.1f}", border=0)
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h2>{html.escape(title)}</h2>"
        + (f"<p>{html.escape(intro)}</p>" if intro else "")
        + body
        + "</body></html>\n"
    )
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
