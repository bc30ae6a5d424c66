"""Statistics over seeds and streams as small pure functions: arrays in, numbers out.

Conventions: missing values are NaN and are dropped before a statistic is computed; anything
that cannot be computed (too few values, zero variance) is NaN, never zero. Two-sided tests,
95% confidence by default.

- ``t_interval``: mean, sample standard deviation (ddof = 1) and the Student-t interval
  mean +- t_{1-alpha/2, n-1} * std / sqrt(n); NaN std and interval for n = 1.
- ``paired_comparison``: seed-paired comparison of two strategies: mean difference, paired
  t-test, Wilcoxon signed-rank test (scipy defaults: zero differences dropped, exact p-value for
  small samples without ties) and Cohen's d_z = mean(d) / std(d) of the paired differences d.
- ``holm``: Holm's step-down adjustment of a family of p-values.
- ``friedman``, ``average_ranks``, ``nemenyi_cd``: Demsar (2006) comparison of k strategies
  over N blocks (streams): Friedman chi-square, average ranks (1 = best) and the Nemenyi
  critical difference CD = q_alpha * sqrt(k (k + 1) / (6 N)), q_alpha the studentized range
  quantile over sqrt(2).
- ``ratio_interval``: Fieller's interval for the ratio of two paired means, mean(x) / mean(y).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import stats as _st

CONFIDENCE = 0.95
_ZERO = 1e-12  # |difference| below this counts as zero (results of identical computations)


def finite(values: Sequence[float]) -> np.ndarray:
    """``values`` as a float array without NaN / None / infinite entries."""
    arr = np.array([np.nan if v is None else v for v in np.ravel(np.asarray(values, dtype=object))],
                   dtype=float)
    return arr[np.isfinite(arr)]


@dataclass(frozen=True)
class Interval:
    """Mean, sample std (ddof 1), the t-interval [low, high] and the number of values n."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval of the finite ``values``.

    n = 0: everything NaN; n = 1: the mean, NaN std and interval; zero spread: a zero-width
    interval (the values really are equal).
    """
    x = finite(values)
    n = len(x)
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, np.nan, 0)
    mean = float(np.mean(x))
    if n == 1:
        return Interval(mean, np.nan, np.nan, np.nan, 1)
    std = float(np.std(x, ddof=1))
    half = float(_st.t.ppf(0.5 + confidence / 2, n - 1)) * std / np.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n)


def cohens_dz(x: Sequence[float], y: Sequence[float]) -> float:
    """Cohen's d_z for paired samples: mean(x - y) / std(x - y, ddof 1); NaN if n < 2 or the
    differences have no spread."""
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    if len(d) < 2:
        return np.nan
    sd = float(np.std(d, ddof=1))
    return float(np.mean(d) / sd) if sd > _ZERO else np.nan


@dataclass(frozen=True)
class PairedComparison:
    """Seed-paired comparison of x against y (difference d = x - y); NaN fields come with a
    ``reason``."""

    n: int
    mean_x: float
    mean_y: float
    mean_difference: float
    t_statistic: float
    t_p: float
    wilcoxon_statistic: float
    wilcoxon_p: float
    effect_size_dz: float
    reason: str = ""


def paired_comparison(x: Sequence[float], y: Sequence[float]) -> PairedComparison:
    """Paired t-test, Wilcoxon signed-rank test and d_z of x against y (pairs with a NaN on
    either side are dropped)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    nan = np.nan
    if n == 0:
        return PairedComparison(0, nan, nan, nan, nan, nan, nan, nan, nan,
                                "no paired seeds")
    d = x - y
    base = dict(n=n, mean_x=float(np.mean(x)), mean_y=float(np.mean(y)),
                mean_difference=float(np.mean(d)))
    if n < 2:
        return PairedComparison(**base, t_statistic=nan, t_p=nan, wilcoxon_statistic=nan,
                                wilcoxon_p=nan, effect_size_dz=nan,
                                reason="fewer than 2 paired seeds")
    if np.all(np.abs(d) <= _ZERO):
        return PairedComparison(**base, t_statistic=nan, t_p=nan, wilcoxon_statistic=nan,
                                wilcoxon_p=nan, effect_size_dz=nan,
                                reason="all paired differences are zero")
    w = _st.wilcoxon(x, y)
    if np.ptp(d) <= _ZERO:
        return PairedComparison(**base, t_statistic=nan, t_p=nan,
                                wilcoxon_statistic=float(w.statistic), wilcoxon_p=float(w.pvalue),
                                effect_size_dz=nan,
                                reason="paired differences are all equal: t-test and d_z "
                                       "undefined (zero variance)")
    t = _st.ttest_rel(x, y)
    return PairedComparison(**base, t_statistic=float(t.statistic), t_p=float(t.pvalue),
                            wilcoxon_statistic=float(w.statistic), wilcoxon_p=float(w.pvalue),
                            effect_size_dz=cohens_dz(x, y))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values over the finite entries of ``p_values`` (the family
    size m counts only those); NaN entries stay NaN.

    With p_(1) <= ... <= p_(m): adj_(i) = max over j <= i of min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def average_ranks(scores: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Mean rank of each column over the rows (blocks) of ``scores`` (N x k); rank 1 is the
    best in a row, ties get the average of their ranks."""
    s = np.asarray(scores, dtype=float)
    ranks = _st.rankdata(-s if higher_is_better else s, axis=1)
    return ranks.mean(axis=0)


def friedman(scores: np.ndarray) -> tuple:
    """Friedman chi-square statistic and p-value for ``scores`` (N blocks x k treatments);
    (NaN, NaN) unless N >= 2 and k >= 3 and no entry is NaN."""
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or s.shape[0] < 2 or s.shape[1] < 3 or not np.all(np.isfinite(s)):
        return np.nan, np.nan
    if np.all(np.ptp(s, axis=1) == 0):
        return np.nan, np.nan  # every block ties all treatments: the statistic is 0 / 0
    res = _st.friedmanchisquare(*s.T)
    return float(res.statistic), float(res.pvalue)


def nemenyi_cd(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks for k treatments over n_blocks blocks:
    q_alpha sqrt(k (k + 1) / (6 N)), q_alpha = studentized range quantile(1 - alpha; k, inf)
    / sqrt(2). NaN if k < 2 or N < 1."""
    if k < 2 or n_blocks < 1:
        return np.nan
    return _nemenyi_q(k, alpha) * np.sqrt(k * (k + 1) / (6.0 * n_blocks))


@cache
def _nemenyi_q(k: int, alpha: float) -> float:
    """q_alpha of the Nemenyi test (cached: the studentized range quantile is slow)."""
    return float(_st.studentized_range.ppf(1 - alpha, k, np.inf)) / np.sqrt(2)


@dataclass(frozen=True)
class Ratio:
    """Ratio of paired means mean(x) / mean(y) with Fieller's interval [low, high]."""

    ratio: float
    low: float
    high: float
    n: int
    reason: str = ""


def ratio_interval(x: Sequence[float], y: Sequence[float],
                   confidence: float = CONFIDENCE) -> Ratio:
    """Fieller's interval for R = mean(x) / mean(y) over paired samples.

    The interval is the set of R for which a one-sample t-test of the paired values
    x_i - R y_i does not reject mean 0: (xbar - R ybar)^2 <= t^2 (s_xx - 2 R s_xy + R^2 s_yy) / n.
    When mean(y) is not significantly different from 0 that set is unbounded and the interval is
    NaN (with a reason); when mean(y) is 0 the ratio itself is NaN.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n == 0:
        return Ratio(np.nan, np.nan, np.nan, 0, "no paired seeds")
    xbar, ybar = float(np.mean(x)), float(np.mean(y))
    if abs(ybar) <= _ZERO:
        return Ratio(np.nan, np.nan, np.nan, n, "the reference mean is 0: ratio undefined")
    ratio = xbar / ybar
    if n < 2:
        return Ratio(ratio, np.nan, np.nan, n, "fewer than 2 paired seeds: no interval")
    cov = np.cov(x, y, ddof=1)
    sxx, syy, sxy = cov[0, 0], cov[1, 1], cov[0, 1]
    q = float(_st.t.ppf(0.5 + confidence / 2, n - 1)) ** 2 / n
    a = ybar ** 2 - q * syy
    b = -2 * (xbar * ybar - q * sxy)
    c = xbar ** 2 - q * sxx
    if a <= 0:
        return Ratio(ratio, np.nan, np.nan, n, "the reference mean is not significantly "
                     "different from 0: the interval is unbounded")
    disc = max(b * b - 4 * a * c, 0.0)
    low, high = sorted(((-b - np.sqrt(disc)) / (2 * a), (-b + np.sqrt(disc)) / (2 * a)))
    return Ratio(ratio, float(low), float(high), n)

