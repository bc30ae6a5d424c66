"""Figures of a results folder (seaborn / matplotlib, Agg backend, PNG bytes).

Every function takes tidy tables and returns a ``Chart`` (file name, title, caption, PNG bytes);
nothing here reads records or writes files. Values stored as fractions are plotted in points (%).
Interval bands and error bars are 95% Student-t intervals over seeds (none where n < 2).
"""
from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from benchmark.report import stats  # noqa: E402

DPI = 100


@dataclass(frozen=True)
class Chart:
    """A rendered figure: ``name`` is its file name under ``figures/``."""

    name: str
    title: str
    caption: str
    png: bytes


def slug(text: str) -> str:
    """A file-name-safe form of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def palette(labels: Sequence[str]) -> dict[str, tuple]:
    """One fixed colour per strategy label, the same in every figure."""
    colours = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return dict(zip(labels, colours))


def display_name(label: str, reference: dict[str, bool]) -> str:
    return f"{label} (upper bound)" if reference.get(label) else label


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def accuracy_heatmaps(stream: str, matrices: dict[str, np.ndarray], order: Sequence[str],
                      reference: dict[str, bool]) -> Chart:
    """One panel per strategy: the mean over seeds of a[k][j] (row: after step k, column:
    experience j), in points; the upper triangle is empty."""
    labels = [s for s in order if s in matrices]
    ncols = min(4, len(labels))
    nrows = -(-len(labels) // ncols)
    t = max(len(m) for m in matrices.values())
    size = 1.0 + 0.42 * t
    fig = Figure(figsize=(size * ncols + 1.2, size * nrows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, label in zip(axes, labels):
        m = 100 * matrices[label]
        ticks = list(range(1, len(m) + 1))
        sns.heatmap(m, ax=ax, mask=~np.isfinite(m), vmin=0, vmax=100, cmap="viridis",
                    annot=len(m) <= 10, fmt=".0f", annot_kws={"fontsize": 7}, square=True,
                    cbar=False, xticklabels=ticks, yticklabels=ticks)
        ax.set_title(display_name(label, reference), fontsize=9)
        ax.set_xlabel("experience j")
        ax.set_ylabel("after step k")
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    fig.colorbar(axes[0].collections[0], ax=list(axes[:len(labels)]), label="accuracy (%)",
                 shrink=0.8)
    fig.suptitle(f"{stream}: mean accuracy matrix a[k][j]", fontsize=11)
    return Chart(f"accuracy_matrix__{slug(stream)}.png", f"Accuracy matrices ({stream})",
                 "Mean over seeds of a[k][j], the accuracy on experience j after step k, in %.",
                 _png(fig))


def _step_band(steps: pd.DataFrame, column: str) -> pd.DataFrame:
    rows = []
    for step, group in steps.groupby("step"):
        ci = stats.t_interval(group[column])
        rows.append((step, ci.mean, ci.low, ci.high))
    return pd.DataFrame(rows, columns=["step", "mean", "low", "high"]).dropna(subset=["mean"])


def per_step_curves(stream: str, steps: pd.DataFrame, order: Sequence[str],
                    reference: dict[str, bool], colours: dict[str, tuple]) -> Chart:
    """A_k and L_k against the step k, one line per strategy, 95% t-interval bands."""
    fig = Figure(figsize=(12, 4.4))
    panels = fig.subplots(1, 2)
    for ax, column, title in ((panels[0], "accuracy", "average accuracy A_k"),
                              (panels[1], "locality", "step locality L_k")):
        for label in order:
            band = _step_band(steps[steps["label"] == label], column)
            if band.empty:
                continue
            style = "--" if reference.get(label) else "-"
            ax.plot(band["step"], 100 * band["mean"], style, marker="o", markersize=4,
                    color=colours[label], label=display_name(label, reference))
            ax.fill_between(band["step"], 100 * band["low"], 100 * band["high"],
                            color=colours[label], alpha=0.18, linewidth=0)
        ax.set_title(title)
        ax.set_xlabel("step k")
        ax.set_ylabel("%")
        ax.set_ylim(-3, 103)
        ax.grid(True, alpha=0.3)
        if len(steps):
            ax.set_xticks(sorted(steps["step"].unique()))
    handles, labels = panels[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9)
    fig.suptitle(f"{stream}: accuracy and locality per step", fontsize=11)
    fig.tight_layout()
    return Chart(f"per_step__{slug(stream)}.png", f"Accuracy and locality per step ({stream})",
                 "A_k (mean accuracy over experiences seen so far) and L_k (fraction of earlier "
                 "test samples whose prediction did not change at step k), mean over seeds with "
                 "95% t-interval bands; dashed: the reference upper bound.", _png(fig))


def forgetting_vs_locality(stream: str, summary: pd.DataFrame, reference: dict[str, bool],
                           colours: dict[str, tuple]) -> Chart:
    """One point per strategy: mean forgetting (x) against mean locality L (y), with 95%
    t-interval error bars."""
    fig = Figure(figsize=(6.8, 5.2))
    ax = fig.subplots()
    for i, (_, row) in enumerate(summary.iterrows()):
        x, y = 100 * row["forgetting_mean"], 100 * row["locality_mean"]
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        xerr = 100 * (row["forgetting_ci_high"] - row["forgetting_ci_low"]) / 2
        yerr = 100 * (row["locality_ci_high"] - row["locality_ci_low"]) / 2
        ax.errorbar([x], [y], xerr=[xerr] if np.isfinite(xerr) else None,
                    yerr=[yerr] if np.isfinite(yerr) else None, fmt="s" if
                    reference.get(row["label"]) else "o", markersize=7, capsize=3,
                    color=colours[row["label"]], label=display_name(row["label"], reference))
        ax.annotate(row["label"], (x, y), textcoords="offset points",
                    xytext=(6, 6 + 11 * (i % 3)), fontsize=8)  # staggered: points may coincide
    ax.set_xlabel("forgetting (%)  (lower is better)")
    ax.set_ylabel("locality L (%)  (higher is better)")
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    ax.set_title(f"{stream}: forgetting against locality")
    return Chart(f"forgetting_vs_locality__{slug(stream)}.png",
                 f"Forgetting against locality ({stream})",
                 "Mean forgetting and mean step locality L per strategy, with 95% t-interval "
                 "error bars over seeds (none when n < 2); the best corner is top left.",
                 _png(fig))


def critical_difference(metric: str, ranks: pd.DataFrame, colours: dict[str, tuple]) -> Chart:
    """Average ranks over streams (1 = best) with bars of half the Nemenyi CD on each side:
    two strategies whose bars do not overlap differ significantly (alpha 0.05)."""
    ranks = ranks.sort_values("average_rank")
    cd = float(ranks["nemenyi_cd"].iloc[0])
    k = len(ranks)
    fig = Figure(figsize=(7.5, 0.9 + 0.42 * k))
    ax = fig.subplots()
    for i, (_, row) in enumerate(ranks.iterrows()):
        ax.errorbar([row["average_rank"]], [i], xerr=[cd / 2], fmt="o", capsize=4,
                    color=colours.get(row["strategy"], "black"))
    ax.set_yticks(range(k))
    ax.set_yticklabels(ranks["strategy"])
    ax.invert_yaxis()
    ax.set_xlim(0.5 - cd / 2, k + 0.5 + cd / 2)
    ax.set_xlabel(f"average rank over {int(ranks['n_streams'].iloc[0])} streams (1 = best); "
                  f"bars: +- CD/2, CD = {cd:.2f}")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(f"critical difference: {metric}")
    return Chart(f"critical_difference__{slug(metric)}.png", f"Critical difference ({metric})",
                 "Average rank of each strategy over streams (Friedman ranks, 1 = best) with "
                 "bars of half the Nemenyi critical difference on each side: non-overlapping "
                 "bars mark a significant difference at alpha = 0.05.", _png(fig))


def all_charts(summary: pd.DataFrame, steps: pd.DataFrame,
               matrices: dict[str, dict[str, np.ndarray]], ranks: pd.DataFrame,
               order: Sequence[str], reference: dict[str, bool],
               cd_metrics: Sequence[str] = ("final_accuracy", "locality", "forgetting")
               ) -> list[Chart]:
    """Every figure of a report: per stream a heatmap panel set, the per-step curves and the
    forgetting-locality scatter; across streams, critical-difference views of ``cd_metrics``."""
    colours = palette(list(order))
    charts = []
    for stream in sorted(summary["stream"].unique()):
        stream_order = [s for s in order if s in set(summary.loc[summary["stream"] == stream,
                                                                  "label"])]
        if matrices.get(stream):
            charts.append(accuracy_heatmaps(stream, matrices[stream], stream_order, reference))
        in_stream = steps[steps["stream"] == stream]
        if len(in_stream):
            charts.append(per_step_curves(stream, in_stream, stream_order, reference, colours))
        rows = summary[(summary["stream"] == stream) & (summary["n"] > 0)]
        if len(rows):
            charts.append(forgetting_vs_locality(stream, rows, reference, colours))
    for metric in cd_metrics:
        sub = ranks[ranks["metric"] == metric]
        if len(sub) and np.isfinite(sub["nemenyi_cd"].iloc[0]):
            charts.append(critical_difference(metric, sub, colours))
    return charts
