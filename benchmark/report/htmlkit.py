"""Building blocks of the HTML report: its inline CSS, escaping, number formats and tables.
Cells passed to ``table`` are already-escaped HTML."""
from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Optional

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1320px; padding: 0 16px; color: #1d2330; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #d8dde6; padding-bottom: 4px; margin-top: 1.8em; }
h3 { margin-bottom: 0.3em; }
nav a { margin-right: 14px; color: #2750a8; text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.86em; }
th, td { border: 1px solid #d8dde6; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #eef1f6; }
td.text, th.text { text-align: left; }
tr.reference td, tr.ablation td { color: #5b6475; font-style: italic; background: #f6f7f9; }
td.best { font-weight: bold; background: #dff3e3; }
.tag { font-size: 0.75em; background: #5b6475; color: white; border-radius: 3px;
       padding: 1px 5px; font-style: normal; margin-left: 4px; }
.note { color: #5b6475; font-size: 0.88em; }
.ci { color: #5b6475; font-size: 0.85em; white-space: nowrap; }
.verdict { font-weight: bold; padding: 6px 10px; border-radius: 4px; display: inline-block; }
.verdict.yes { background: #dff3e3; } .verdict.no { background: #fbe3e3; }
.verdict.undefined { background: #fff4d6; }
details { margin: 8px 0 16px; } summary { cursor: pointer; font-weight: bold; }
figure { margin: 12px 0 28px; }
figure img { max-width: 100%; border: 1px solid #d8dde6; }
figcaption { color: #5b6475; font-size: 0.88em; }
.error { color: #a11; font-family: monospace; text-align: left; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def finite(value) -> bool:
    return is_number(value) and math.isfinite(value)


def num(value, digits: int = 3, scale: float = 1.0, signed: bool = False) -> str:
    """A number for display (with its sign when ``signed``); an em dash for NaN / None."""
    if not finite(value):
        return "—"
    return f"{scale * float(value):{'+' if signed else ''}.{digits}f}"


def interval(mean, low, high, digits: int = 1, scale: float = 1.0, signed: bool = True) -> str:
    """``mean [low, high]``; the mean alone without an interval; an em dash when undefined."""
    text = num(mean, digits, scale, signed)
    if finite(low) and finite(high):
        text += f" [{num(low, digits, scale, signed)}, {num(high, digits, scale, signed)}]"
    return text


def pval(value) -> str:
    if not finite(value):
        return "—"
    return "&lt;0.001" if value < 0.001 else f"{value:.3f}"


def text(value) -> str:
    """An escaped string, or empty for a missing (NaN / None) value."""
    return esc(value) if isinstance(value, str) else ""


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], text_columns=1,
          row_classes: Optional[Sequence[str]] = None,
          cell_classes: Optional[Sequence[Sequence[str]]] = None) -> str:
    """An HTML table from already-escaped cell strings; ``text_columns`` (the first n columns,
    or a set of column indices) are left-aligned, the others right-aligned."""
    rows = list(rows)
    left = set(range(text_columns)) if isinstance(text_columns, int) else set(text_columns)
    head = "".join(f'<th class="text">{h}</th>' if i in left else f"<th>{h}</th>"
                   for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = []
        for i, cell in enumerate(row):
            names = ["text"] if i in left else []
            if cell_classes and cell_classes[r][i]:
                names.append(cell_classes[r][i])
            attr = f' class="{" ".join(names)}"' if names else ""
            cells.append(f"<td{attr}>{cell}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
