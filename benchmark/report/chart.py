"""What every figure shares: the ``Chart`` it returns, one fixed style per strategy (colour,
marker and line style, so strategies stay apart when their values coincide), the small
horizontal offsets (dodge) of per-step curves, and PNG rendering (matplotlib, Agg backend)."""
from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np

matplotlib.use("Agg")
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
LINE_STYLES = ("-", "--", "-.", ":")
DODGE = 0.07  # x offset between neighbouring strategies on a per-step axis, in steps


@dataclass(frozen=True)
class Chart:
    """A rendered figure: ``name`` is its file name under ``figures/``."""

    name: str
    title: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class Style:
    """How one strategy is drawn in every figure."""

    colour: tuple
    marker: str
    line: str


def slug(text: str) -> str:
    """A file-name-safe form of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def styles(labels: Sequence[str]) -> dict[str, Style]:
    """One fixed style per strategy label, in order: a colour, a marker and a line style that
    neighbouring labels do not share."""
    colours = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return {label: Style(tuple(colours[i]), MARKERS[i % len(MARKERS)],
                         LINE_STYLES[i % len(LINE_STYLES)]) for i, label in enumerate(labels)}


def dodge(index: int, count: int, width: float = DODGE) -> float:
    """The horizontal offset of the ``index``-th of ``count`` strategies, centred on 0."""
    return (index - (count - 1) / 2) * width


def display_name(label: str, tags: dict[str, str]) -> str:
    """A label with its role tag (``upper bound``, ``ablation``) when it has one."""
    return f"{label} ({tags[label]})" if tags.get(label) else label


def error_bars(spread) -> np.ndarray:
    """Error-bar lengths for matplotlib: NaN (no interval) as 0, and never negative (a mean
    and a bound of a point interval can differ in the last bit)."""
    return np.clip(np.nan_to_num(np.asarray(spread, dtype=float)), 0.0, None)


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def legend_outside(ax, fontsize: int = 9) -> None:
    """The legend of ``ax`` to the right of the plot area, never over the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5),
                  fontsize=fontsize, frameon=False)
