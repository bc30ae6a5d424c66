"""Training curves: the mean training loss of every epoch across steps, per strategy and, for
strategies whose steps have several phases (PNC: gates, each insertion position, the refit),
per phase (``training_curves.png``, one panel per stream)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.report.chart import LINE_STYLES, Chart, Style, display_name, png


def phase_group(phase: str) -> str:
    """A phase's name without its variant (``insert@2`` -> ``insert``)."""
    return phase.split("@")[0]


def curve_points(losses: pd.DataFrame) -> pd.DataFrame:
    """Mean loss over seeds at each (label, step, index, phase) of one stream, with its
    position x = step + index / (entries of the step): each step spans [k, k + 1) on the x axis
    and its phases follow each other in training order."""
    if losses.empty:
        return pd.DataFrame(columns=["label", "phase", "step", "index", "x", "loss"])
    mean = losses.groupby(["label", "step", "index", "phase"], as_index=False)["loss"].mean()
    length = mean.groupby(["label", "step"])["index"].transform("max") + 1
    mean["x"] = mean["step"] + mean["index"] / length
    return mean.sort_values(["label", "step", "index"], kind="stable").reset_index(drop=True)


def training_curves(losses: pd.DataFrame, order: Sequence[str], tags: dict[str, str],
                    style: dict[str, Style]) -> Chart:
    """One panel per stream: for each strategy (its colour and marker) and phase (line style),
    the mean over seeds of each epoch's training loss, broken between steps and phases."""
    streams = sorted(losses["stream"].unique())
    ncols = min(2, len(streams))
    nrows = -(-len(streams) // ncols)
    fig = Figure(figsize=(9.5 * ncols, 4.8 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, stream in zip(axes, streams):
        points = curve_points(losses[losses["stream"] == stream])
        for label in [s for s in order if (points["label"] == s).any()]:
            mine = points[points["label"] == label]
            groups = list(dict.fromkeys(phase_group(p) for p in mine["phase"]))
            named = set()
            for phase in dict.fromkeys(mine["phase"]):
                group = phase_group(phase)
                y = np.where(mine["phase"] == phase, mine["loss"], np.nan)  # breaks the line
                name = display_name(label, tags) + (f" · {group}" if len(groups) > 1 else "")
                s = style[label]
                ax.plot(mine["x"], y, color=s.colour, marker=s.marker, markersize=3,
                        linestyle=LINE_STYLES[groups.index(group) % len(LINE_STYLES)],
                        linewidth=1.2, label=None if name in named else name)
                named.add(name)
        ax.set_title(stream)
        ax.set_xlabel("step (each step's epochs in training order)")
        positive = bool((points["loss"].dropna() > 0).all()) and points["loss"].notna().any()
        ax.set_yscale("log" if positive else "linear")  # phases differ by orders of magnitude
        ax.set_ylabel("mean training loss" + (" (log scale)" if positive else ""))
        ax.grid(True, alpha=0.3)
        ticks = sorted(points["step"].unique())
        ax.set_xticks(ticks)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    for ax in axes[len(streams):]:
        ax.set_visible(False)
    fig.suptitle("Training loss per epoch", fontsize=11)
    return Chart("training_curves.png", "Training curves",
                 "Mean over seeds of each epoch's mean training loss, step after step (each "
                 "step spans one unit of the x axis); strategies whose steps have several "
                 "phases (PNC: gate training, each candidate insertion position, the refit) "
                 "show one line style per phase. Losses of different phases measure different "
                 "things (distillation, cross-entropy) and are comparable only within a "
                 "phase.", png(fig))
