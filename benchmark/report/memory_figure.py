"""Final accuracy against memory per strategy, with the Pareto front of the non-reference
strategies (``memory__<stream>.png``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.report.chart import (
    Chart,
    Style,
    display_name,
    error_bars,
    legend_outside,
    png,
    slug,
)


def pareto_front(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """True for the points no other point dominates: none has a cost <= and a value >= with
    one of them strict. Points with a NaN are never on the front."""
    cost = np.asarray(cost, dtype=float)
    value = np.asarray(value, dtype=float)
    ok = np.isfinite(cost) & np.isfinite(value)
    front = np.zeros(len(cost), dtype=bool)
    for i in np.flatnonzero(ok):
        others = ok & (np.arange(len(cost)) != i)
        dominated = others & (cost <= cost[i]) & (value >= value[i]) & (
            (cost < cost[i]) | (value > value[i]))
        front[i] = not dominated.any()
    return front


def accuracy_against_memory(stream: str, summary: pd.DataFrame, tags: dict[str, str],
                            roles: dict[str, str], style: dict[str, Style]) -> Chart:
    """One hollow marker per strategy: total bytes after the last step (x, log scale) against
    final accuracy A_T (y, %), both with 95% interval bars; the Pareto front of the rivals and
    ablations (references excluded) as a grey staircase, its members filled."""
    rows = summary[np.isfinite(summary["total_bytes_mean"].astype(float))].reset_index(drop=True)
    x = rows["total_bytes_mean"].to_numpy(float)
    y = 100 * rows["final_accuracy_mean"].to_numpy(float)
    candidates = rows["label"].map(lambda s: roles.get(s, "rival") != "reference").to_numpy()
    front = pareto_front(np.where(candidates, x, np.nan), y)
    fig = Figure(figsize=(8.2, 5.0))
    ax = fig.subplots()
    if front.any():
        idx = np.flatnonzero(front)[np.argsort(x[front])]
        ax.plot(x[idx], y[idx], drawstyle="steps-post", color="0.55", linestyle="--",
                linewidth=1.2, label="Pareto front (filled markers)", zorder=1)
    for i, row in rows.iterrows():
        s = style[row["label"]]
        xerr = [[x[i] - row["total_bytes_ci_low"]], [row["total_bytes_ci_high"] - x[i]]]
        yerr = [[y[i] - 100 * row["final_accuracy_ci_low"]],
                [100 * row["final_accuracy_ci_high"] - y[i]]]
        ax.errorbar([x[i]], [y[i]], xerr=error_bars(xerr), yerr=error_bars(yerr),
                    fmt=s.marker, markersize=11 - min(i, 5), markeredgewidth=1.6, capsize=3,
                    color=s.colour, markerfacecolor=s.colour if front[i] else "none",
                    label=display_name(row["label"], tags), zorder=2)
    ax.set_xscale("log")
    ax.set_xlabel("memory after the last step: model + state (bytes, log scale)")
    ax.set_ylabel("final accuracy A_T (%)")
    ax.set_ylim(-3, 103)
    ax.grid(True, which="both", alpha=0.3)
    legend_outside(ax, fontsize=8)
    ax.set_title(f"{stream}: final accuracy against memory")
    return Chart(f"memory__{slug(stream)}.png", f"Final accuracy against memory ({stream})",
                 "Mean final accuracy A_T against the mean total memory after the last step "
                 "(model parameters and buffers plus everything kept for later steps), with "
                 "95% interval bars over seeds. Filled markers and the dashed staircase: the "
                 "Pareto front (no other rival is at least as accurate with no more memory); "
                 "references are drawn but never on the front.", png(fig))
