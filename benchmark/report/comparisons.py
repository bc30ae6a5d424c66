"""Comparisons between strategies from the runs table: every rival and ablation against
``pnc`` paired by seed, and the Friedman / Iman-Davenport tests with average ranks across
streams. The paper-claim check is in ``claim``, PNC's ablations in ``ablations``.

Roles (``tables.strategy_info``): a ``reference`` (joint, the oracle) is never compared; an
``ablation`` (pnc-router) is paired against pnc but left out of the ranks; ``rival``s are
both.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np
import pandas as pd

from benchmark.core.metrics import ALL_METRIC_NAMES, METRICS_BY_NAME
from benchmark.report import stats
from benchmark.report.tables import BASELINE, label_roles, strategy_order

ALPHA = 0.05
WILCOXON_ABSENT = "Wilcoxon absent"  # how a reason saying the rank test cannot reject starts
TESTED_METRICS = tuple(ALL_METRIC_NAMES)


class SeedValues:
    """Metric values of successful runs by (stream, label), indexed by seed."""

    def __init__(self, runs: pd.DataFrame):
        ok = runs[runs["status"] == "ok"]
        numeric = [c for c in ok.columns if pd.api.types.is_float_dtype(ok[c])]
        self.groups = {key: g.groupby("seed")[numeric].mean()
                       for key, g in ok.groupby(["stream", "label"])}

    def __call__(self, stream: str, label: str, metric: str) -> pd.Series:
        group = self.groups.get((stream, label))
        if group is None or metric not in group:
            return pd.Series(dtype=float)
        return group[metric]

    def paired(self, stream: str, x_label: str, y_label: str, metric: str
               ) -> tuple[np.ndarray, np.ndarray]:
        """Values of ``metric`` for the seeds both labels have, as two aligned arrays."""
        x, y = self(stream, x_label, metric), self(stream, y_label, metric)
        seeds = sorted(set(x.index) & set(y.index))
        return x.reindex(seeds).to_numpy(float), y.reindex(seeds).to_numpy(float)


def higher_is_better(metric: str) -> bool:
    return METRICS_BY_NAME[metric].higher_is_better if metric in METRICS_BY_NAME else True


def compared_labels(runs: pd.DataFrame, stream: str) -> list[str]:
    """Labels paired against pnc on ``stream``: rivals and ablations, pnc and references
    excluded."""
    sub = runs[(runs["stream"] == stream) & (runs["role"] != "reference")]
    return [s for s in strategy_order(sub["label"], label_roles(runs))
            if s.split("[")[0] != BASELINE]


def baseline_label(runs: pd.DataFrame, stream: str, strategy: str = BASELINE
                   ) -> tuple[Optional[str], str]:
    """The one label of ``strategy`` (default ``pnc``) with successful runs on ``stream``, or
    None and the reason (none, or several configurations: pairing by seed needs one)."""
    sub = runs[(runs["stream"] == stream) & (runs["strategy"] == strategy)]
    ok_labels = sorted(sub.loc[sub["status"] == "ok", "label"].unique())
    if not ok_labels:
        return None, f"{strategy} has no successful runs on {stream}"
    if len(ok_labels) > 1:
        return None, (f"{strategy} has {len(ok_labels)} configurations on {stream}; paired tests "
                      "need one")
    return ok_labels[0], ""


TEST_COLUMNS = ["test", "stream", "metric", "higher_is_better", "strategy", "role", "baseline",
                "n", "mean_strategy", "mean_baseline", "mean_difference", "difference_low",
                "difference_high", "test_applied", "p_holm", "t_statistic", "t_p", "t_p_holm",
                "wilcoxon_statistic", "wilcoxon_p", "wilcoxon_p_holm", "wilcoxon_min_p_holm",
                "effect_size_dz", "friedman_chi2", "friedman_p", "iman_davenport_f",
                "iman_davenport_p", "nemenyi_cd", "reason"]


def _paired_row(by_seed: SeedValues, stream: str, base: Optional[str], why: str, rival: str,
                metric: str, role: str) -> dict:
    row = {"test": "paired", "stream": stream, "metric": metric,
           "higher_is_better": higher_is_better(metric), "strategy": rival, "role": role,
           "baseline": BASELINE}
    if base is None:
        row.update(n=0, mean_strategy=stats.mean_interval(by_seed(stream, rival, metric)).mean,
                   reason=why)
        return row
    cmp = stats.paired_comparison(*by_seed.paired(stream, base, rival, metric))
    row.update(n=cmp.n, mean_strategy=cmp.mean_y, mean_baseline=cmp.mean_x,
               mean_difference=cmp.mean_difference, difference_low=cmp.difference_low,
               difference_high=cmp.difference_high, t_statistic=cmp.t_statistic, t_p=cmp.t_p,
               wilcoxon_statistic=cmp.wilcoxon_statistic, wilcoxon_p=cmp.wilcoxon_p,
               effect_size_dz=cmp.effect_size_dz, n_nonzero=cmp.n_nonzero, reason=cmp.reason)
    return row


def _apply_tests(family: list[dict], alpha: float) -> None:
    """Holm over the family, then the test that applies to each row: Wilcoxon when its
    smallest attainable Holm-adjusted p is below ``alpha``, else the paired t-test when
    defined; the Wilcoxon p-values are blanked where the test could not reject."""
    m = max(1, sum(1 for r in family if math.isfinite(r.get("wilcoxon_p", np.nan))))
    for p in ("t_p", "wilcoxon_p"):
        for r, v in zip(family, stats.holm([r.get(p, np.nan) for r in family])):
            r[f"{p}_holm"] = v
    for r in family:
        reasons = [r["reason"]] if r.get("reason") else []
        n_nonzero = r.pop("n_nonzero", 0)
        if r.get("n", 0) >= 2:
            floor = stats.wilcoxon_min_p(n_nonzero, m)
            r["wilcoxon_min_p_holm"] = floor
            if floor >= alpha and math.isfinite(r.get("wilcoxon_p", np.nan)):
                r["wilcoxon_p"] = r["wilcoxon_p_holm"] = np.nan
                reasons.append(f"{WILCOXON_ABSENT}: with {n_nonzero} non-zero differences and "
                               f"{m} comparisons its smallest Holm-adjusted p is "
                               f"{floor:.3g} >= {alpha:g}")
        if math.isfinite(r.get("wilcoxon_p_holm", np.nan)):
            r.update(test_applied="wilcoxon", p_holm=r["wilcoxon_p_holm"])
        elif math.isfinite(r.get("t_p_holm", np.nan)):
            r.update(test_applied="t", p_holm=r["t_p_holm"])
        else:
            r["test_applied"] = ""
        r["reason"] = "; ".join(reasons)


def paired_tests(runs: pd.DataFrame, metrics: Sequence[str] = TESTED_METRICS,
                 alpha: float = ALPHA) -> pd.DataFrame:
    """Every rival and ablation against ``pnc`` per stream and metric, paired by seed.

    ``mean_difference`` = mean over paired seeds of (pnc - strategy), with its interval
    ``difference_low``/``difference_high`` (``stats.mean_interval``); p-values are two-sided;
    ``*_holm`` are Holm-adjusted over the comparisons of one stream x metric family.
    ``test_applied`` names the test whose Holm-adjusted p is ``p_holm``: ``wilcoxon`` where it
    can reject at ``alpha`` (``wilcoxon_min_p_holm`` < alpha), else ``t``. Undefined entries
    are NaN with a ``reason``.
    """
    rows = []
    by_seed = SeedValues(runs)
    roles = label_roles(runs)
    for stream in sorted(runs["stream"].unique()):
        base, why = baseline_label(runs, stream)
        compared = compared_labels(runs, stream)
        for metric in metrics:
            family = [_paired_row(by_seed, stream, base, why, rival, metric, roles[rival])
                      for rival in compared]
            _apply_tests(family, alpha)
            rows.extend(family)
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def _stream_means(runs: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """Streams x rival labels (pnc included; references and ablations excluded) of mean
    metric values, keeping only labels with a value on every stream; and the labels dropped."""
    ok = runs[(runs["status"] == "ok") & (runs["role"] == "rival")]
    table = ok.groupby(["stream", "label"])[metric].mean().unstack("label")
    complete = table.columns[table.notna().all(axis=0)]
    return table[complete], sorted(set(table.columns) - set(complete))


def friedman_tests(runs: pd.DataFrame, metrics: Sequence[str] = TESTED_METRICS,
                   alpha: float = ALPHA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Across several streams: per metric, a Friedman test over the rival strategies (blocks =
    streams, values = means over seeds) with the Iman-Davenport F and the Nemenyi CD; and the
    average ranks (1 = best).

    Returns (rows for tests.csv, ranks table); both empty with fewer than 2 streams.
    """
    rank_cols = ["metric", "strategy", "average_rank", "n_streams", "nemenyi_cd"]
    if runs["stream"].nunique() < 2:
        return pd.DataFrame(columns=TEST_COLUMNS), pd.DataFrame(columns=rank_cols)
    rows, ranks = [], []
    for metric in metrics:
        table, dropped = _stream_means(runs, metric)
        n, k = table.shape
        higher = higher_is_better(metric)
        row = {"test": "friedman", "stream": "all streams", "metric": metric,
               "higher_is_better": higher, "strategy": ", ".join(table.columns), "n": n}
        reasons = []
        if dropped:
            reasons.append(f"left out (not on every stream): {', '.join(dropped)}")
        if n < 2 or k < 3:
            reasons.append("needs at least 3 strategies with values on at least 2 streams")
        else:
            chi2, p = stats.friedman(table.to_numpy())
            if not math.isfinite(chi2):
                reasons.append("every stream ties all strategies")
            f, f_p = stats.iman_davenport(chi2, n, k)
            cd = stats.nemenyi_cd(k, n, alpha)
            row.update(friedman_chi2=chi2, friedman_p=p, iman_davenport_f=f,
                       iman_davenport_p=f_p, nemenyi_cd=cd)
            for label, rank in zip(table.columns, stats.average_ranks(table.to_numpy(), higher)):
                ranks.append({"metric": metric, "strategy": label, "average_rank": rank,
                              "n_streams": n, "nemenyi_cd": cd})
        row["reason"] = "; ".join(reasons)
        rows.append(row)
    return pd.DataFrame(rows, columns=TEST_COLUMNS), pd.DataFrame(ranks, columns=rank_cols)


def combine_tests(*parts: pd.DataFrame) -> pd.DataFrame:
    """Rows of several test tables as one ``tests.csv`` table."""
    parts = [t for t in parts if len(t)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TEST_COLUMNS)
