"""PNC's ablations per stream (``ablations.csv``), paired by seed on the final accuracy A_T:

- "PNC net of its router": A_T(pnc) - A_T(pnc-router), what PNC's cloned modules add to its
  router's classifier alone;
- "routing loss": A_T(pnc-oracle) - A_T(pnc), what PNC loses by not knowing the step (the
  oracle's modules are told it).

Each difference is in points with its interval (``stats.mean_interval``); a row without the
strategies it needs says so.
"""
from __future__ import annotations

import pandas as pd

from benchmark.report import stats
from benchmark.report.comparisons import SeedValues, baseline_label

ROUTER, ORACLE = "pnc-router", "pnc-oracle"
ABLATIONS = (
    ("PNC net of its router", "pnc", ROUTER,
     "what PNC's modules add over its router's classifier alone"),
    ("routing loss", ORACLE, "pnc", "what PNC loses by routing instead of being told the step"),
)
ABLATION_COLUMNS = ["stream", "quantity", "minuend", "subtrahend", "meaning", "metric",
                    "n_pairs", "difference_points", "difference_low", "difference_high",
                    "reason"]


def ablation_table(runs: pd.DataFrame, metric: str = "final_accuracy",
                   confidence: float = stats.CONFIDENCE) -> pd.DataFrame:
    """Per stream, the rows of ``ABLATIONS``: the paired difference minuend - subtrahend of
    ``metric`` in points (100 x), mean and interval; undefined with a reason when a strategy
    is missing or fewer than 2 seeds pair."""
    rows = []
    by_seed = SeedValues(runs)
    for stream in sorted(runs["stream"].unique()):
        labels = {s: baseline_label(runs, stream, s) for s in ("pnc", ROUTER, ORACLE)}
        for quantity, minuend, subtrahend, meaning in ABLATIONS:
            row = {"stream": stream, "quantity": quantity, "minuend": minuend,
                   "subtrahend": subtrahend, "meaning": meaning, "metric": metric}
            missing = [labels[s][1] for s in (minuend, subtrahend) if not labels[s][0]]
            if missing:
                row.update(n_pairs=0, reason="; ".join(missing))
                rows.append(row)
                continue
            x, y = by_seed.paired(stream, labels[minuend][0], labels[subtrahend][0], metric)
            ci = stats.mean_interval(100 * (x - y), confidence)
            row.update(n_pairs=ci.n, difference_points=ci.mean, difference_low=ci.low,
                       difference_high=ci.high,
                       reason="" if ci.n >= 2 else f"{ci.n} paired seed(s): no interval")
            rows.append(row)
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)
