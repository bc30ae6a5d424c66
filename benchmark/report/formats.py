"""The summary as display strings, Markdown and LaTeX: ``mean ± half-width`` per metric, best
rivals in bold, the reference marked and never bold."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchmark.core.metrics import Metric
from benchmark.report.tables import SUMMARY_METRICS

DISPLAY_METRICS = tuple(m for m in SUMMARY_METRICS if m.name != "final_accuracy_weighted")


def format_cell(mean: float, low: float, high: float, unit: str) -> str:
    """``mean ± half-width`` of a summary cell: fractions in points with one decimal, counts
    as integers, seconds with one decimal; an em dash when undefined."""
    if not math.isfinite(mean):
        return "—"
    scale, digits = (100.0, 1) if unit == "fraction" else (1.0, 0 if unit == "count" else 1)
    text = f"{scale * mean:,.{digits}f}"
    if math.isfinite(low) and math.isfinite(high):
        half = scale * (high - low) / 2
        if unit != "count" or half > 0:
            text += f" ± {half:,.{digits}f}"
    return text


def column_title(metric: Metric) -> str:
    unit = {"fraction": " (%)", "seconds": " (s)", "count": ""}[metric.unit]
    return f"{metric.label}{unit} {'↑' if metric.higher_is_better else '↓'}"


def best_mask(summary: pd.DataFrame, metrics: Sequence[Metric] = DISPLAY_METRICS
              ) -> pd.DataFrame:
    """True where a summary row holds the best mean of its stream's rivals for that metric
    (ties all marked; the reference is never marked; nothing is marked when fewer than 2 rivals
    have a value or when all of them tie)."""
    mask = pd.DataFrame(False, index=summary.index, columns=[m.name for m in metrics])
    for _, rows in summary.groupby("stream"):
        rivals = rows[~rows["reference"].astype(bool) & (rows["n"] > 0)]
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


def display_summary(summary: pd.DataFrame, metrics: Sequence[Metric] = DISPLAY_METRICS
                    ) -> pd.DataFrame:
    """The summary as display strings: Stream, Strategy (the reference tagged as the upper
    bound), n, then ``mean ± half-width`` per metric."""
    rows = []
    for _, r in summary.iterrows():
        row = {"Stream": r["stream"],
               "Strategy": f"{r['label']} (upper bound)" if r["reference"] else r["label"],
               "n": str(int(r["n"]))}
        for m in metrics:
            row[column_title(m)] = format_cell(r[f"{m.name}_mean"], r[f"{m.name}_ci_low"],
                                               r[f"{m.name}_ci_high"], m.unit)
        rows.append(row)
    return pd.DataFrame(rows, columns=["Stream", "Strategy", "n",
                                       *[column_title(m) for m in metrics]])


SUMMARY_NOTE = ("Mean ± half-width of the 95% Student-t interval over the n seeds of each "
                "strategy (no interval when n = 1). Accuracy, forgetting, BWT and locality in "
                "points (%); Params after the last step; Train = training seconds summed over "
                "steps (source cost excluded). ↑ higher is better, ↓ lower is better; the best "
                "rival per stream is marked in bold (the reference is an upper bound, not a "
                "rival, and is never marked).")


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
    unit = {"fraction": " (\\%)", "seconds": " (s)", "count": ""}[m.unit]
    return f"{_TEX_TITLES.get(m.label, tex_escape(m.label))}{unit} " \
           f"{UP if m.higher_is_better else DOWN}"


def summary_latex(summary: pd.DataFrame) -> str:
    """``summary.tex``: a booktabs table (needs ``\\usepackage{booktabs}``), best rivals bold."""
    shown = display_summary(summary)
    mask = best_mask(summary)
    heads = ["Stream", "Strategy", "$n$"] + [_tex_title(m) for m in DISPLAY_METRICS]
    caption = tex_escape(SUMMARY_NOTE).replace("↑", UP).replace("↓", DOWN).replace(
        "±", "$\\pm$")
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
            cell = tex_escape(row[column_title(m)]).replace("±", "$\\pm$").replace("—", "--")
            cells.append(f"\\textbf{{{cell}}}" if mask.iloc[i][m.name] else cell)
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\label{tab:clonebench-summary}",
              "\\end{table}"]
    return "\n".join(lines) + "\n"


