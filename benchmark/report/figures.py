"""Figures of a results folder (seaborn / matplotlib, Agg backend, PNG bytes).

Every function takes tidy tables and returns a ``Chart`` (file name, title, caption, PNG bytes);
nothing here reads records or writes files. Values stored as fractions are plotted in points (%).
Interval bands and error bars are the summary's 95% intervals over seeds
(``stats.mean_interval``; none where n < 2). Strategies keep one colour, marker and line style
in every figure; per-step curves are offset horizontally (dodged) so that coinciding ones stay
visible; markers are hollow so that coinciding points show each shape; legends sit outside the
plot area and no text is written over the data.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from benchmark.report import stats
from benchmark.report.chart import (
    Chart,
    Style,
    display_name,
    dodge,
    error_bars,
    legend_outside,
    png,
    slug,
    styles,
)
from benchmark.report.memory_figure import accuracy_against_memory
from benchmark.report.training_figure import training_curves


def accuracy_heatmaps(stream: str, matrices: dict[str, np.ndarray], order: Sequence[str],
                      tags: dict[str, str]) -> Chart:
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
        ax.set_title(display_name(label, tags), fontsize=9)
        ax.set_xlabel("experience j")
        ax.set_ylabel("after step k")
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    fig.colorbar(axes[0].collections[0], ax=list(axes[:len(labels)]), label="accuracy (%)",
                 shrink=0.8)
    fig.suptitle(f"{stream}: mean accuracy matrix a[k][j]", fontsize=11)
    return Chart(f"accuracy_matrix__{slug(stream)}.png", f"Accuracy matrices ({stream})",
                 "Mean over seeds of a[k][j], the accuracy on experience j after step k, in %.",
                 png(fig))


def step_band(steps: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per step: mean of ``column`` over seeds and its interval (NaN bounds for one seed)."""
    rows = []
    for step, group in steps.groupby("step"):
        ci = stats.mean_interval(group[column])
        rows.append((step, ci.mean, ci.low, ci.high))
    return pd.DataFrame(rows, columns=["step", "mean", "low", "high"]).dropna(subset=["mean"])


def per_step_curves(stream: str, steps: pd.DataFrame, order: Sequence[str],
                    tags: dict[str, str], style: dict[str, Style]) -> Chart:
    """A_k and L_k against the step k, one line per strategy (dodged), interval bars."""
    fig = Figure(figsize=(12, 4.4))
    panels = fig.subplots(1, 2)
    labels = [s for s in order if (steps["label"] == s).any()]
    for ax, column, title in ((panels[0], "accuracy", "average accuracy A_k"),
                              (panels[1], "locality", "step locality L_k")):
        for i, label in enumerate(labels):
            band = step_band(steps[steps["label"] == label], column)
            if band.empty:
                continue
            s = style[label]
            x = band["step"] + dodge(i, len(labels))
            y = 100 * band["mean"]
            spread = np.vstack([y - 100 * band["low"], 100 * band["high"] - y])
            ax.errorbar(x, y, yerr=error_bars(spread), color=s.colour,
                        linestyle=s.line, marker=s.marker, markersize=5, capsize=2,
                        markerfacecolor="none", linewidth=1.4, label=display_name(label, tags))
        ax.set_title(title)
        ax.set_xlabel("step k")
        ax.set_ylabel("%")
        ax.set_ylim(-3, 103)
        ax.grid(True, alpha=0.3)
        if len(steps):
            ax.set_xticks(sorted(steps["step"].unique()))
    handles, names = panels[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9,
                   frameon=False)
    fig.suptitle(f"{stream}: accuracy and locality per step", fontsize=11)
    fig.tight_layout()
    return Chart(f"per_step__{slug(stream)}.png", f"Accuracy and locality per step ({stream})",
                 "A_k (mean accuracy over experiences seen so far) and L_k (fraction of earlier "
                 "test samples whose prediction did not change at step k), mean over seeds with "
                 "95% interval bars; strategies are offset slightly along the step axis so that "
                 "coinciding curves stay visible.", png(fig))


def forgetting_vs_locality(stream: str, summary: pd.DataFrame, tags: dict[str, str],
                           style: dict[str, Style]) -> Chart:
    """One hollow marker per strategy: mean forgetting (x) against mean locality L (y), with
    95% interval error bars; the legend names them."""
    fig = Figure(figsize=(7.6, 5.2))
    ax = fig.subplots()
    for i, (_, row) in enumerate(summary.iterrows()):
        x, y = 100 * row["forgetting_mean"], 100 * row["locality_mean"]
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        xerr = [[x - 100 * row["forgetting_ci_low"]], [100 * row["forgetting_ci_high"] - x]]
        yerr = [[y - 100 * row["locality_ci_low"]], [100 * row["locality_ci_high"] - y]]
        s = style[row["label"]]
        ax.errorbar([x], [y], xerr=error_bars(xerr), yerr=error_bars(yerr),
                    fmt=s.marker, markersize=12 - min(i, 6), markerfacecolor="none",
                    markeredgewidth=1.6, capsize=3, color=s.colour,
                    label=display_name(row["label"], tags))
    ax.set_xlabel("forgetting (%)  (lower is better)")
    ax.set_ylabel("locality L (%)  (higher is better)")
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.grid(True, alpha=0.3)
    legend_outside(ax, fontsize=8)
    ax.set_title(f"{stream}: forgetting against locality")
    return Chart(f"forgetting_vs_locality__{slug(stream)}.png",
                 f"Forgetting against locality ({stream})",
                 "Mean forgetting and mean step locality L per strategy, with 95% interval "
                 "error bars over seeds (none when n < 2); hollow markers of different shapes "
                 "and sizes so that coinciding strategies stay visible; the best corner is top "
                 "left.", png(fig))


def critical_difference(metric: str, ranks: pd.DataFrame, style: dict[str, Style]) -> Chart:
    """Average ranks over streams (1 = best) with bars of half the Nemenyi CD on each side:
    two strategies whose bars do not overlap differ significantly (alpha 0.05)."""
    ranks = ranks.sort_values("average_rank")
    cd = float(ranks["nemenyi_cd"].iloc[0])
    k = len(ranks)
    fig = Figure(figsize=(7.5, 0.9 + 0.42 * k))
    ax = fig.subplots()
    for i, (_, row) in enumerate(ranks.iterrows()):
        s = style.get(row["strategy"])
        ax.errorbar([row["average_rank"]], [i], xerr=[cd / 2], fmt=s.marker if s else "o",
                    capsize=4, color=s.colour if s else "black")
    ax.set_yticks(range(k))
    ax.set_yticklabels(ranks["strategy"])
    ax.invert_yaxis()
    ax.set_xlim(0.5 - cd / 2, k + 0.5 + cd / 2)
    ax.set_xlabel(f"average rank over {int(ranks['n_streams'].iloc[0])} streams (1 = best); "
                  f"bars: +- CD/2, CD = {cd:.2f}")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(f"critical difference: {metric}")
    return Chart(f"critical_difference__{slug(metric)}.png", f"Critical difference ({metric})",
                 "Average rank of each rival over streams (Friedman ranks, 1 = best) with "
                 "bars of half the Nemenyi critical difference on each side: non-overlapping "
                 "bars mark a significant difference at alpha = 0.05.", png(fig))


def all_charts(summary: pd.DataFrame, steps: pd.DataFrame, losses: pd.DataFrame,
               matrices: dict[str, dict[str, np.ndarray]], ranks: pd.DataFrame,
               order: Sequence[str], tags: dict[str, str], roles: dict[str, str],
               cd_metrics: Sequence[str] = ("final_accuracy", "locality", "forgetting")
               ) -> list[Chart]:
    """Every figure of a report: per stream a heatmap panel set, the per-step curves, the
    forgetting-locality scatter and final accuracy against memory; the training curves (one
    panel per stream); across streams, critical-difference views of ``cd_metrics``."""
    style = styles(list(order))
    charts = []
    for stream in sorted(summary["stream"].unique()):
        stream_order = [s for s in order if s in set(summary.loc[summary["stream"] == stream,
                                                                  "label"])]
        if matrices.get(stream):
            charts.append(accuracy_heatmaps(stream, matrices[stream], stream_order, tags))
        in_stream = steps[steps["stream"] == stream]
        if len(in_stream):
            charts.append(per_step_curves(stream, in_stream, stream_order, tags, style))
        rows = summary[(summary["stream"] == stream) & (summary["n"] > 0)]
        if len(rows):
            charts.append(forgetting_vs_locality(stream, rows, tags, style))
        if len(rows) and np.isfinite(rows["total_bytes_mean"].astype(float)).any():
            charts.append(accuracy_against_memory(stream, rows, tags, roles, style))
    if len(losses):
        charts.append(training_curves(losses, order, tags, style))
    for metric in cd_metrics:
        sub = ranks[ranks["metric"] == metric]
        if len(sub) and np.isfinite(sub["nemenyi_cd"].iloc[0]):
            charts.append(critical_difference(metric, sub, style))
    return charts
