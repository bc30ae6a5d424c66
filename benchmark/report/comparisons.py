"""Comparisons between strategies from the runs table: every rival against ``pnc`` paired by
seed, Friedman tests across streams, and the paper-claim check."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np
import pandas as pd

from benchmark.core.metrics import METRIC_NAMES, METRICS_BY_NAME
from benchmark.report import stats
from benchmark.report.tables import BASELINE, strategy_order

PARAMETER_TUNING = ("finetune", "ewc", "lwf")
CLAIMED_POINTS = 5.0  # the paper: about +5 points of final accuracy over parameter tuning
CLAIMED_GAIN = 0.5  # the paper: about +50% locality over parameter tuning
TESTED_METRICS = tuple(METRIC_NAMES)


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


def _rivals(runs: pd.DataFrame, stream: str) -> list[str]:
    sub = runs[(runs["stream"] == stream) & ~runs["reference"]]
    reference = dict(zip(runs["label"], runs["reference"]))
    return [s for s in strategy_order(sub["label"], reference) if s.split("[")[0] != BASELINE]


def _baseline_label(runs: pd.DataFrame, stream: str) -> tuple[Optional[str], str]:
    """The ``pnc`` label with successful runs on ``stream``, or None and the reason."""
    sub = runs[(runs["stream"] == stream) & (runs["strategy"] == BASELINE)]
    ok_labels = sorted(sub.loc[sub["status"] == "ok", "label"].unique())
    if not ok_labels:
        return None, f"{BASELINE} has no successful runs on {stream}"
    if len(ok_labels) > 1:
        return None, (f"{BASELINE} has {len(ok_labels)} configurations on {stream}; paired tests "
                      "need one")
    return ok_labels[0], ""


TEST_COLUMNS = ["test", "stream", "metric", "higher_is_better", "strategy", "baseline", "n",
                "mean_strategy", "mean_baseline", "mean_difference", "t_statistic", "t_p",
                "t_p_holm", "wilcoxon_statistic", "wilcoxon_p", "wilcoxon_p_holm",
                "effect_size_dz", "friedman_chi2", "friedman_p", "nemenyi_cd", "reason"]


def paired_tests(runs: pd.DataFrame, metrics: Sequence[str] = TESTED_METRICS) -> pd.DataFrame:
    """Every rival against ``pnc`` per stream and metric, paired by seed.

    ``mean_difference`` = mean over paired seeds of (pnc - strategy); ``effect_size_dz`` is
    Cohen's d_z of those differences; p-values are two-sided; ``*_holm`` are Holm-adjusted over
    the rivals of one stream x metric family. Undefined entries are NaN with a ``reason``.
    """
    rows = []
    by_seed = SeedValues(runs)
    for stream in sorted(runs["stream"].unique()):
        base, why = _baseline_label(runs, stream)
        rivals = _rivals(runs, stream)
        for metric in metrics:
            family = []
            for rival in rivals:
                y = by_seed(stream, rival, metric)
                row = {"test": "paired", "stream": stream, "metric": metric,
                       "higher_is_better": METRICS_BY_NAME[metric].higher_is_better
                       if metric in METRICS_BY_NAME else True,
                       "strategy": rival, "baseline": BASELINE}
                if base is None:
                    row.update(n=0, mean_strategy=stats.t_interval(y).mean, reason=why)
                else:
                    x = by_seed(stream, base, metric)
                    seeds = sorted(set(x.index) & set(y.index))
                    cmp = stats.paired_comparison(x.reindex(seeds).to_numpy(float),
                                                  y.reindex(seeds).to_numpy(float))
                    row.update(n=cmp.n, mean_strategy=cmp.mean_y, mean_baseline=cmp.mean_x,
                               mean_difference=cmp.mean_difference, t_statistic=cmp.t_statistic,
                               t_p=cmp.t_p, wilcoxon_statistic=cmp.wilcoxon_statistic,
                               wilcoxon_p=cmp.wilcoxon_p, effect_size_dz=cmp.effect_size_dz,
                               reason=cmp.reason)
                family.append(row)
            for p in ("t_p", "wilcoxon_p"):
                adjusted = stats.holm([r.get(p, np.nan) for r in family])
                for r, v in zip(family, adjusted):
                    r[f"{p}_holm"] = v
            rows.extend(family)
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def _stream_means(runs: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[str]]:
    """Streams x rival labels (pnc included, reference excluded) of mean metric values, keeping
    only labels with a value on every stream; and the labels dropped."""
    ok = runs[(runs["status"] == "ok") & ~runs["reference"]]
    table = ok.groupby(["stream", "label"])[metric].mean().unstack("label")
    complete = table.columns[table.notna().all(axis=0)]
    return table[complete], sorted(set(table.columns) - set(complete))


def friedman_tests(runs: pd.DataFrame, metrics: Sequence[str] = TESTED_METRICS,
                   alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Across several streams: per metric, a Friedman test over the rival strategies (blocks =
    streams, values = means over seeds) and the Nemenyi CD; and the average ranks (1 = best).

    Returns (rows for tests.csv, ranks table); both empty with fewer than 2 streams.
    """
    rank_cols = ["metric", "strategy", "average_rank", "n_streams", "nemenyi_cd"]
    if runs["stream"].nunique() < 2:
        return pd.DataFrame(columns=TEST_COLUMNS), pd.DataFrame(columns=rank_cols)
    rows, ranks = [], []
    for metric in metrics:
        table, dropped = _stream_means(runs, metric)
        n, k = table.shape
        higher = METRICS_BY_NAME[metric].higher_is_better if metric in METRICS_BY_NAME else True
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
            cd = stats.nemenyi_cd(k, n, alpha)
            row.update(friedman_chi2=chi2, friedman_p=p, nemenyi_cd=cd)
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


# ---------------------------------------------------------------- the paper-claim check


def claim_verdict(low: float, high: float, claimed: float, unit: str) -> str:
    """Plain-language reading of a 95% interval [low, high] of PNC's gain against the claim."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undefined"
    if high < 0:
        return "contradicted: PNC is significantly worse"
    if low <= 0:
        return "not supported: no significant gain (the interval includes 0)"
    if high < claimed:
        return f"partly supported: a significant gain, but below the claimed {claimed:+g}{unit}"
    if low > claimed:
        return f"supported: the gain exceeds the claimed {claimed:+g}{unit}"
    return f"supported: the interval contains the claimed {claimed:+g}{unit}"


CLAIM_COLUMNS = ["stream", "pnc", "best_parameter_tuning", "candidates", "n_pairs",
                 "accuracy_difference_points", "accuracy_difference_low",
                 "accuracy_difference_high", "accuracy_verdict", "locality_pnc",
                 "locality_best", "locality_gain", "locality_gain_low", "locality_gain_high",
                 "locality_verdict", "supports_claim", "reason"]


def claim_table(runs: pd.DataFrame, confidence: float = stats.CONFIDENCE,
                claimed_points: float = CLAIMED_POINTS,
                claimed_gain: float = CLAIMED_GAIN) -> pd.DataFrame:
    """Per stream, PNC against the best parameter-tuning method (finetune / EWC / LwF, highest
    mean final accuracy over its successful runs), paired by seed:

    - accuracy difference in points, 100 (A_T^pnc - A_T^best), mean and t-interval;
    - relative locality gain (mean L^pnc - mean L^best) / mean L^best, with Fieller's interval
      for the ratio of paired means (minus 1).

    ``supports_claim`` is True when both verdicts read "supported", False when either is a
    defined verdict that is not, and NaN when undefined.
    """
    rows = []
    by_seed = SeedValues(runs)
    for stream in sorted(runs["stream"].unique()):
        row = {"stream": stream}
        base, why = _baseline_label(runs, stream)
        ok = runs[(runs["stream"] == stream) & (runs["status"] == "ok")]
        tuning = ok[ok["strategy"].isin(PARAMETER_TUNING)]
        cands = tuning.groupby("label")["final_accuracy"].mean().dropna()
        row["candidates"] = ", ".join(cands.index)
        if base is None or cands.empty:
            row["reason"] = why if base is None else (
                f"no successful finetune, ewc or lwf runs on {stream}")
            rows.append(row)
            continue
        best = cands.idxmax()
        row.update(pnc=base, best_parameter_tuning=best)
        acc_x, acc_y = (by_seed(stream, s, "final_accuracy") for s in (base, best))
        loc_x, loc_y = (by_seed(stream, s, "locality") for s in (base, best))
        seeds = sorted(set(acc_x.index) & set(acc_y.index))
        diff = stats.t_interval(100 * (acc_x.reindex(seeds) - acc_y.reindex(seeds)), confidence)
        ratio = stats.ratio_interval(loc_x.reindex(seeds).to_numpy(float),
                                     loc_y.reindex(seeds).to_numpy(float), confidence)
        reasons = []
        if diff.n < 2:
            reasons.append(f"accuracy: {diff.n} paired seed(s), an interval needs 2")
        if ratio.reason:
            reasons.append(f"locality: {ratio.reason}")
        acc_verdict = claim_verdict(diff.low, diff.high, claimed_points, " points")
        loc_verdict = claim_verdict(100 * (ratio.low - 1), 100 * (ratio.high - 1),
                                    100 * claimed_gain, "%")
        verdicts = (acc_verdict, loc_verdict)
        if any(v == "undefined" for v in verdicts):
            supports = np.nan if all(v == "undefined" or v.startswith("supported")
                                     for v in verdicts) else False
        else:
            supports = all(v.startswith("supported") for v in verdicts)
        row.update(n_pairs=len(seeds), accuracy_difference_points=diff.mean,
                   accuracy_difference_low=diff.low, accuracy_difference_high=diff.high,
                   accuracy_verdict=acc_verdict,
                   locality_pnc=float(loc_x.reindex(seeds).mean()) if seeds else np.nan,
                   locality_best=float(loc_y.reindex(seeds).mean()) if seeds else np.nan,
                   locality_gain=ratio.ratio - 1, locality_gain_low=ratio.low - 1,
                   locality_gain_high=ratio.high - 1, locality_verdict=loc_verdict,
                   supports_claim=supports, reason="; ".join(reasons))
        rows.append(row)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


