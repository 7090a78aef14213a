"""The report page: PNG files from Matplotlib figures, and one HTML file that embeds them (views offline)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

# Reports are files: no display to draw on, and no GUI toolkit should be imported for them.
matplotlib.use("Agg")

_DPI = 110
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em}"
    "th{background:#f2f2f2}img{max-width:100%;border:1px solid #eee}p.note{color:#8a4b00}"
)


class NotDrawn(Exception):
    """A plot cannot say anything about these trials; the message says why, and the page shows it."""


@dataclass(frozen=True)
class Section:
    """One heading of the page, with any of: a note, a table, an image (a PNG written beside the page)."""

    title: str
    note: str = ""
    table: pd.DataFrame | None = None
    image: Path | None = None


def save_png(figure: Figure, path: Path) -> Path:
    """Write `figure` as a PNG and free it (pyplot keeps every open figure alive otherwise)."""
    figure.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(figure)
    return path


def write_page(path: Path, title: str, intro: list[str], sections: list[Section]) -> Path:
    """Write a self-contained HTML page: styles inline, images as base64 data URIs, no scripts."""
    parts = [
        "<!doctype html>",
        f"<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f"<p>{html.escape(line)}</p>" for line in intro),
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.note:
            parts.append(f"<p class='note'>{html.escape(section.note)}</p>")
        if section.table is not None:
            parts.append(section.table.to_html(index=False, na_rep="", border=0, float_format="{:.4g}".format))
        if section.image is not None:
            data = base64.b64encode(section.image.read_bytes()).decode("ascii")
            parts.append(f"<img alt='{html.escape(section.title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def markdown_table(frame: pd.DataFrame) -> str:
    """`frame` as a Markdown table, cells as they are (format numbers before)."""
    cells = frame.astype(object).where(frame.notna(), "")
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines)
