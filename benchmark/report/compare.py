"""``clonebench compare DIR_A DIR_B``: do two results folders agree within their intervals?

Per stream, strategy label and metric of the metric table, each folder's mean over its seeds
and 95% interval (``stats.mean_interval``, as in ``summary.csv``). The rule: **a metric agrees
when the two intervals overlap**; with one seed a folder's interval is its value itself, so
one-seed results agree only when equal. A label whose runs all failed in one folder but not in
the other differs; a metric one folder does not record (older records) is not compared.
Strategies present in one folder only are listed. Exit status 0 when every compared metric
agrees, 1 when any differs, 2 when a folder is not a results folder.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.errors import UsageError
from benchmark.core.metrics import METRICS
from benchmark.report.stats import INTERVAL_METHOD
from benchmark.report.tables import runs_table, summary_table
from benchmark.run.store import ResultsStore

TOLERANCE = 1e-12
RULE = ("a metric agrees when its 95% intervals over seeds in the two folders overlap "
        f"({INTERVAL_METHOD}; with one seed the interval is the value itself, so equal values "
        "agree)")
SHOWN = "final_accuracy"  # the metric printed on every line


def bounds(mean: float, low: float, high: float) -> tuple[float, float]:
    """A folder's interval of a mean: [low, high], or the point [mean, mean] without one."""
    if math.isfinite(low) and math.isfinite(high):
        return low, high
    return mean, mean


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True when the intervals a and b share a point (up to rounding)."""
    return a[0] <= b[1] + TOLERANCE and b[0] <= a[1] + TOLERANCE


def compare_summaries(a: pd.DataFrame, b: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """One row per (stream, label) present in both summaries and metric: each side's mean and
    interval, ``difference`` = mean B - mean A and ``status``: ``agree``, ``differ`` or
    ``not compared`` (a side without the metric while it has successful runs)."""
    rows = []
    right = b.set_index(["stream", "label"])
    for _, ra in a.iterrows():
        if (ra["stream"], ra["label"]) not in right.index:
            continue
        rb = right.loc[(ra["stream"], ra["label"])]
        for m in metrics:
            row = {"stream": ra["stream"], "label": ra["label"], "metric": m.name,
                   "n_a": int(ra["n"]), "n_b": int(rb["n"]), "seeds_a": ra["seeds"],
                   "seeds_b": rb["seeds"]}
            for side, r in (("a", ra), ("b", rb)):
                row.update({f"mean_{side}": float(r[f"{m.name}_mean"]),
                            f"low_{side}": float(r[f"{m.name}_ci_low"]),
                            f"high_{side}": float(r[f"{m.name}_ci_high"])})
            found = [math.isfinite(row["mean_a"]), math.isfinite(row["mean_b"])]
            if all(found):
                agree = overlap(bounds(row["mean_a"], row["low_a"], row["high_a"]),
                                bounds(row["mean_b"], row["low_b"], row["high_b"]))
                row.update(difference=row["mean_b"] - row["mean_a"],
                           status="agree" if agree else "differ")
            elif not any(found):
                continue
            else:
                missing_n = row["n_b"] if found[0] else row["n_a"]
                row.update(difference=np.nan, status="differ" if missing_n == 0 else
                           "not compared")
            rows.append(row)
    return pd.DataFrame(rows, columns=["stream", "label", "metric", "n_a", "n_b", "seeds_a",
                                       "seeds_b", "mean_a", "low_a", "high_a", "mean_b",
                                       "low_b", "high_b", "difference", "status"])


def only_in(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """``stream/label`` of the rows of summary a that summary b lacks."""
    theirs = set(zip(b["stream"], b["label"]))
    return [f"{s}/{label}" for s, label in zip(a["stream"], a["label"])
            if (s, label) not in theirs]


def _cell(mean: float, low: float, high: float) -> str:
    if not math.isfinite(mean):
        return "—"
    text = f"{100 * mean:.1f}"
    return text + (f" [{100 * low:.1f}, {100 * high:.1f}]" if math.isfinite(low) else "")


def report_lines(rows: pd.DataFrame, only_a: list[str], only_b: list[str]) -> list[str]:
    """The comparison as text: the rule, one line per stream and strategy (A_T in each folder,
    B - A, the verdict over every metric, the metrics that differ), the labels in one folder
    only, and a count."""
    lines = [f"Rule: {RULE}. Values in points (%).", ""]
    table = []
    agreeing = 0
    for (stream, label), group in rows.groupby(["stream", "label"], sort=True):
        shown = group[group["metric"] == SHOWN]
        first = shown.iloc[0] if len(shown) else group.iloc[0]
        differ = group[group["status"] == "differ"]
        skipped = int((group["status"] == "not compared").sum())
        compared = len(group) - skipped
        if differ.empty:
            agreeing += 1
            verdict = f"agree ({compared} metrics)"
        else:
            verdict = "DIFFER: " + "; ".join(
                f"{r['metric']} {_cell(r['mean_a'], r['low_a'], r['high_a'])} vs "
                f"{_cell(r['mean_b'], r['low_b'], r['high_b'])}" for _, r in differ.iterrows())
        if skipped:
            verdict += f" ({skipped} metric(s) recorded in one folder only)"
        if first["seeds_a"] != first["seeds_b"]:
            verdict += f" [seeds {first['seeds_a'] or '-'} vs {first['seeds_b'] or '-'}]"
        diff = first["difference"]
        table.append([stream, label, _cell(first["mean_a"], first["low_a"], first["high_a"]),
                      _cell(first["mean_b"], first["low_b"], first["high_b"]),
                      f"{100 * diff:+.2f}" if math.isfinite(diff) else "—", verdict])
    heads = ["stream", "strategy", "A_T in A", "A_T in B", "B - A", "verdict"]
    widths = [max(len(str(r[i])) for r in [heads, *table]) for i in range(len(heads) - 1)]
    for r in [heads, *table]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    lines += ["", f"Only in A: {', '.join(only_a) or '-'}",
              f"Only in B: {', '.join(only_b) or '-'}",
              f"{agreeing} of {len(table)} strategies in both folders agree on every metric."]
    return lines


def folder_summary(root: Path) -> pd.DataFrame:
    """The summary table of a results folder, from its records (validated first)."""
    if not (Path(root) / "runs").is_dir():
        raise UsageError(f"{root} is not a results folder (no runs/ inside)")
    records = list(ResultsStore(Path(root)).check().records())
    return summary_table(runs_table(records))


def run(args) -> int:
    """Prints the comparison; 0 when every compared metric agrees, else 1."""
    a, b = folder_summary(args.dir_a), folder_summary(args.dir_b)
    rows = compare_summaries(a, b)
    print(f"A = {args.dir_a}\nB = {args.dir_b}")
    print("\n".join(report_lines(rows, only_in(a, b), only_in(b, a))))
    return 1 if (rows["status"] == "differ").any() else 0
