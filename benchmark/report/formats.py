"""The summary as display strings, Markdown and LaTeX: ``mean [low, high]`` per metric (the
95% interval over seeds), memory in readable units, best rivals in bold, references and
ablations tagged and never bold."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark.core.metrics import Metric
from benchmark.report.stats import INTERVAL_METHOD
from benchmark.report.tables import SUMMARY_METRICS

HIDDEN = ("final_accuracy_weighted", "model_bytes", "state_bytes")  # in summary.csv only
_FIRST = ("final_accuracy", "average_incremental_accuracy",
          "average_incremental_accuracy_weighted")  # the two AIAs side by side
DISPLAY_METRICS = tuple(sorted((m for m in SUMMARY_METRICS if m.name not in HIDDEN),
                               key=lambda m: _FIRST.index(m.name) if m.name in _FIRST else 3))
_BYTE_UNITS = ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"))


def format_bytes(value: float) -> str:
    """A byte count in decimal units with one decimal: ``512 B``, ``108.6 kB``, ``2.4 MB``;
    an em dash when undefined."""
    if not math.isfinite(value):
        return "—"
    for size, unit in _BYTE_UNITS:
        if abs(value) >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value:,.0f} B"


def format_cell(mean: float, low: float, high: float, unit: str) -> str:
    """``mean [low, high]`` of a summary cell: fractions in points with one decimal, counts
    as integers, seconds with one decimal, bytes in readable units (the mean only); the
    interval is left out when undefined (one seed) or a point for counts; an em dash when the
    mean is undefined."""
    if not math.isfinite(mean):
        return "—"
    if unit == "bytes":
        return format_bytes(mean)
    scale, digits = (100.0, 1) if unit == "fraction" else (1.0, 0 if unit == "count" else 1)
    text = f"{scale * mean:,.{digits}f}"
    if math.isfinite(low) and math.isfinite(high) and (unit != "count" or high > low):
        text += f" [{scale * low:,.{digits}f}, {scale * high:,.{digits}f}]"
    return text


def column_title(metric: Metric) -> str:
    unit = {"fraction": " (%)", "seconds": " (s)", "count": "", "bytes": ""}[metric.unit]
    return f"{metric.label}{unit} {'↑' if metric.higher_is_better else '↓'}"


def best_mask(summary: pd.DataFrame, metrics: Sequence[Metric] = DISPLAY_METRICS
              ) -> pd.DataFrame:
    """True where a summary row holds the best mean of its stream's rivals for that metric
    (ties all marked; references and ablations are never marked; nothing is marked when fewer
    than 2 rivals have a value or when all of them tie)."""
    mask = pd.DataFrame(False, index=summary.index, columns=[m.name for m in metrics])
    for _, rows in summary.groupby("stream"):
        rivals = rows[(rows["role"] == "rival") & (rows["n"] > 0)]
        for m in metrics:
            values = rivals[f"{m.name}_mean"].astype(float)
            values = values[np.isfinite(values)]
            if len(values) < 2:
                continue
            best = values.max() if m.higher_is_better else values.min()
            is_best = np.isclose(values, best, rtol=0, atol=1e-12)
            if not is_best.all():
                mask.loc[values.index[is_best], m.name] = True
    return mask


def role_tag(role: str, note: str) -> str:
    """How a row's role is named next to its label: ``upper bound`` (a reference's note),
    ``reference``, ``ablation``; empty for rivals."""
    if role == "reference":
        return note or "reference"
    return "ablation" if role == "ablation" else ""


def display_summary(summary: pd.DataFrame, metrics: Sequence[Metric] = DISPLAY_METRICS
                    ) -> pd.DataFrame:
    """The summary as display strings: Stream, Strategy (references and ablations tagged), n,
    then ``mean [low, high]`` per metric."""
    rows = []
    for _, r in summary.iterrows():
        tag = role_tag(r["role"], r["note"] if isinstance(r["note"], str) else "")
        row = {"Stream": r["stream"], "Strategy": f"{r['label']} ({tag})" if tag else r["label"],
               "n": str(int(r["n"]))}
        for m in metrics:
            row[column_title(m)] = format_cell(r[f"{m.name}_mean"], r[f"{m.name}_ci_low"],
                                               r[f"{m.name}_ci_high"], m.unit)
        rows.append(row)
    return pd.DataFrame(rows, columns=["Stream", "Strategy", "n",
                                       *[column_title(m) for m in metrics]])


SUMMARY_NOTE = (f"Mean [95% interval] over the n seeds of each strategy; the interval is an "
                f"{INTERVAL_METHOD} (its bounds are means of observed values, so they stay "
                "within the metric's range; none when n = 1). Accuracy, AIA, forgetting, BWT "
                "and locality in points (%); AIA is the mean over experiences of each step's "
                "accuracy, AIA weighted the mean over steps of the accuracy over all seen test "
                "samples; Params after the last step; Memory = model + state bytes after the "
                "last step (mean over seeds); Train = training seconds summed over steps "
                "(source cost excluded). ↑ higher is better, ↓ lower is better; the best rival "
                "per stream is in bold (references and ablations are not rivals and are never "
                "marked).")


def summary_markdown(summary: pd.DataFrame) -> str:
    """``summary.md``: a note and one Markdown table, best rivals in bold."""
    shown = display_summary(summary)
    mask = best_mask(summary)
    for m in DISPLAY_METRICS:
        col = column_title(m)
        shown.loc[mask[m.name], col] = "**" + shown.loc[mask[m.name], col] + "**"
    table = shown.to_markdown(index=False) if len(shown) else "(no successful runs)"
    return f"# Summary\n\n{SUMMARY_NOTE}\n\n{table}\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}
_TEX_TITLES = {"A_T": "$A_T$", "L": "$L$", "L_orig": r"$L_{\mathrm{orig}}$"}


UP, DOWN = "$\\uparrow$", "$\\downarrow$"


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in str(text))


def _tex_title(m: Metric) -> str:
    unit = {"fraction": " (\\%)", "seconds": " (s)", "count": "", "bytes": ""}[m.unit]
    return f"{_TEX_TITLES.get(m.label, tex_escape(m.label))}{unit} " \
           f"{UP if m.higher_is_better else DOWN}"


def summary_latex(summary: pd.DataFrame) -> str:
    """``summary.tex``: a booktabs table (needs ``\\usepackage{booktabs}``), best rivals bold."""
    shown = display_summary(summary)
    mask = best_mask(summary)
    heads = ["Stream", "Strategy", "$n$"] + [_tex_title(m) for m in DISPLAY_METRICS]
    caption = tex_escape(SUMMARY_NOTE).replace("↑", UP).replace("↓", DOWN)
    lines = ["% Generated by `clonebench report`; needs \\usepackage{booktabs}.",
             "\\begin{table}[t]", "\\centering", "\\small", f"\\caption{{{caption}}}",
             "\\begin{tabular}{ll" + "r" * (1 + len(DISPLAY_METRICS)) + "}", "\\toprule",
             " & ".join(heads) + " \\\\", "\\midrule"]
    previous = None
    for i, (_, row) in enumerate(shown.iterrows()):
        if previous is not None and row["Stream"] != previous:
            lines.append("\\midrule")
        previous = row["Stream"]
        cells = [tex_escape(row["Stream"]), tex_escape(row["Strategy"]), row["n"]]
        for m in DISPLAY_METRICS:
            cell = tex_escape(row[column_title(m)]).replace("—", "--")
            cells.append(f"\\textbf{{{cell}}}" if mask.iloc[i][m.name] else cell)
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\label{tab:clonebench-summary}",
              "\\end{table}"]
    return "\n".join(lines) + "\n"


