"""benchmark.stats against hand-computed values and independent scipy calls."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from benchmark.report import stats


def test_expanded_tail_by_hand():
    # alpha'/2 = Phi(-sqrt(n / (n - 1)) t_{0.975, n-1}); t from a printed table
    for n, t in ((5, 2.776445105), (10, 2.262157163)):
        z = math.sqrt(n / (n - 1)) * t
        assert stats.expanded_tail(n) == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)),
                                                       rel=1e-6)


def test_mean_interval_by_hand():
    # 2 or 3 seeds: the tail (1.7e-72, 6.8e-8) is below the chance of the all-lowest resample
    # (1/4, 1/27), so the interval is [min, max]
    two = stats.mean_interval([0.2, 0.4])
    assert (two.mean, two.low, two.high, two.n) == pytest.approx((0.3, 0.2, 0.4, 2))
    three = stats.mean_interval([0.2, 0.4, 0.9])
    assert (three.low, three.high) == pytest.approx((0.2, 0.9))
    assert three.std == pytest.approx(math.sqrt(((0.3) ** 2 + 0.1 ** 2 + 0.4 ** 2) / 2))
    # 5 seeds: tail 0.00095; P(mean = 0.1) = 1/3125 < tail <= P(mean <= 0.12) = 6/3125, so
    # low = (4 x 0.1 + 0.2) / 5 and, symmetrically, high = (4 x 0.5 + 0.4) / 5
    five = stats.mean_interval([0.1, 0.2, 0.3, 0.4, 0.5])
    assert (five.mean, five.low, five.high) == pytest.approx((0.3, 0.12, 0.48))


def test_mean_interval_edge_cases():
    one = stats.mean_interval([0.7, None, float("nan")])
    assert one.n == 1 and one.mean == 0.7
    assert math.isnan(one.std) and math.isnan(one.low) and math.isnan(one.high)
    none = stats.mean_interval([])
    assert none.n == 0 and math.isnan(none.mean)
    same = stats.mean_interval([0.5, 0.5, 0.5])
    assert (same.low, same.high, same.std) == (0.5, 0.5, 0.0)  # a point


def test_mean_interval_stays_in_range_where_t_does_not():
    values = [1.0, 0.99, 1.0, 0.98, 1.0]
    ci = stats.mean_interval(values)
    t_high = np.mean(values) + st.t.ppf(0.975, 4) * np.std(values, ddof=1) / math.sqrt(5)
    assert t_high > 1.0  # a t-interval leaves [0, 1]
    assert 0.98 <= ci.low < ci.mean < ci.high <= 1.0


def test_monte_carlo_bootstrap_is_deterministic_and_within_the_data():
    x = np.linspace(0.0, 1.0, 12) ** 2
    first, second = stats.mean_interval(x), stats.mean_interval(x)
    assert (first.low, first.high) == (second.low, second.high)
    assert x.min() <= first.low < first.mean < first.high <= x.max()


def test_mean_interval_coverage_on_simulated_data():
    """Coverage of the true mean over 200 samples of 10 Beta(8, 2) values (mean 0.8): close to
    95% (a plain percentile bootstrap gives about 90%)."""
    rng = np.random.default_rng(0)
    hits = [(ci.low <= 0.8 <= ci.high) for ci in
            (stats.mean_interval(rng.beta(8, 2, 10)) for _ in range(200))]
    assert 0.88 <= np.mean(hits) <= 0.99


def test_wilcoxon_min_p():
    assert stats.wilcoxon_min_p(5) == pytest.approx(0.0625)
    assert stats.wilcoxon_min_p(5, comparisons=6) == pytest.approx(0.375)
    assert stats.wilcoxon_min_p(6) == pytest.approx(1 / 32)
    assert stats.wilcoxon_min_p(0) == 1.0 and stats.wilcoxon_min_p(2, 4) == 1.0
    # the exact test really reaches it: 5 positive differences
    assert st.wilcoxon([0.1, 0.2, 0.3, 0.4, 0.5]).pvalue == pytest.approx(0.0625)


def test_paired_comparison_matches_scipy():
    x = np.array([0.81, 0.77, 0.92, 0.85, 0.88, 0.79])
    y = np.array([0.70, 0.79, 0.80, 0.72, 0.81, 0.74])  # d: distinct magnitudes, no ties
    cmp = stats.paired_comparison(x, y)
    d = x - y
    assert cmp.n == 6 and cmp.mean_difference == pytest.approx(d.mean())
    ref_t = st.ttest_rel(x, y)
    assert cmp.t_statistic == pytest.approx(ref_t.statistic) and cmp.t_p == pytest.approx(
        ref_t.pvalue)
    # by hand: t = mean(d) / (sd(d) / sqrt(n)), two-sided p from the t distribution
    t = d.mean() / (np.std(d, ddof=1) / math.sqrt(6))
    assert cmp.t_p == pytest.approx(2 * st.t.sf(abs(t), 5))
    # Wilcoxon exact: one negative difference (rank 1 of 6) -> W = 1, p = 2 * 2 / 64
    assert cmp.wilcoxon_statistic == 1 and cmp.wilcoxon_p == pytest.approx(4 / 64)
    assert cmp.effect_size_dz == pytest.approx(d.mean() / np.std(d, ddof=1))
    assert cmp.reason == ""
    ci = stats.mean_interval(d)
    assert (cmp.difference_low, cmp.difference_high) == (ci.low, ci.high)
    assert d.min() <= cmp.difference_low < d.mean() < cmp.difference_high <= d.max()
    assert cmp.n_nonzero == 6


def test_paired_comparison_undefined_cases():
    zero = stats.paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert zero.mean_difference == 0 and math.isnan(zero.t_p) and math.isnan(zero.wilcoxon_p)
    assert "zero" in zero.reason
    const = stats.paired_comparison([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])
    assert math.isnan(const.t_p) and math.isnan(const.effect_size_dz)
    assert const.wilcoxon_p == pytest.approx(0.25) and "zero variance" in const.reason
    single = stats.paired_comparison([0.6, np.nan], [0.5, 0.4])
    assert single.n == 1 and single.mean_difference == pytest.approx(0.1)
    assert math.isnan(single.t_p) and "fewer than 2" in single.reason
    empty = stats.paired_comparison([], [])
    assert empty.n == 0 and math.isnan(empty.mean_difference)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(0.06, 1*0.04)
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = stats.holm([0.02, np.nan, 0.5])  # m = 2 defined p-values
    assert with_nan[0] == pytest.approx(0.04) and math.isnan(with_nan[1])
    assert with_nan[2] == pytest.approx(0.5)
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_cohens_dz():
    assert stats.cohens_dz([3.0, 5.0], [1.0, 2.0]) == pytest.approx(2.5 / math.sqrt(0.5))
    assert math.isnan(stats.cohens_dz([1.0], [0.0]))
    # a side without variance (a baseline stuck at 0): no effect size, however large the ratio
    assert math.isnan(stats.cohens_dz([0.99, 0.98, 0.995], [0.0, 0.0, 0.0]))


def test_friedman_and_ranks_by_hand():
    scores = np.array([[0.9, 0.6, 0.7],
                       [0.8, 0.7, 0.5],
                       [0.85, 0.65, 0.75],
                       [0.7, 0.8, 0.6]])
    # ranks (1 = best): [1,3,2], [1,2,3], [1,3,2], [2,1,3] -> sums 5, 9, 10
    assert stats.average_ranks(scores) == pytest.approx([5 / 4, 9 / 4, 10 / 4])
    assert stats.average_ranks(scores, higher_is_better=False) == pytest.approx(
        [4 - 5 / 4, 4 - 9 / 4, 4 - 10 / 4])
    n, k = 4, 3
    chi2 = 12 / (n * k * (k + 1)) * (25 + 81 + 100) - 3 * n * (k + 1)
    stat, p = stats.friedman(scores)
    assert stat == pytest.approx(chi2) and p == pytest.approx(math.exp(-chi2 / 2))
    ref = st.friedmanchisquare(*scores.T)
    assert p == pytest.approx(ref.pvalue)
    assert stats.average_ranks(np.array([[0.5, 0.5, 0.1]])) == pytest.approx([1.5, 1.5, 3])


def test_iman_davenport_by_hand():
    # chi2 = 4.5 over N = 4 blocks, k = 3: F = 3 x 4.5 / (8 - 4.5) on (2, 6) dof;
    # for F(2, d) the tail is (1 + 2 F / d)^(-d / 2)
    f, p = stats.iman_davenport(4.5, 4, 3)
    assert f == pytest.approx(13.5 / 3.5)
    assert p == pytest.approx((1 + 2 * f / 6) ** -3)
    assert stats.iman_davenport(8.0, 4, 3) == (math.inf, 0.0)  # every block ranks alike
    assert all(math.isnan(v) for v in stats.iman_davenport(float("nan"), 4, 3))


def test_friedman_undefined_cases():
    assert all(math.isnan(v) for v in stats.friedman(np.array([[0.1, 0.2, 0.3]])))
    assert all(math.isnan(v) for v in stats.friedman(np.array([[0.1, 0.2], [0.3, 0.4]])))
    assert all(math.isnan(v) for v in stats.friedman(np.ones((3, 3))))


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (10, 3.164)])
def test_nemenyi_cd_matches_demsar_table(k, q):
    # q_0.05 from Demsar (2006), table 5(a)
    assert stats.nemenyi_cd(k, 7) == pytest.approx(q * math.sqrt(k * (k + 1) / 42), abs=2e-3)


def test_ratio_interval_endpoints_are_where_the_t_test_rejects():
    x = np.array([0.90, 0.80, 0.95, 0.85, 0.88])
    y = np.array([0.55, 0.50, 0.62, 0.58, 0.52])
    r = stats.ratio_interval(x, y)
    assert r.ratio == pytest.approx(x.mean() / y.mean()) and r.low < r.ratio < r.high
    # Fieller's set: R such that a one-sample t-test of x - R y does not reject at 5%
    for end in (r.low, r.high):
        assert st.ttest_1samp(x - end * y, 0).pvalue == pytest.approx(0.05, abs=1e-9)
    inside = st.ttest_1samp(x - r.ratio * y, 0).pvalue
    assert inside == pytest.approx(1.0)


def test_ratio_interval_undefined_cases():
    zero = stats.ratio_interval([0.5, 0.6], [0.0, 0.0])
    assert math.isnan(zero.ratio) and "0" in zero.reason
    wide = stats.ratio_interval([0.5, 0.6, 0.4], [0.01, -0.01, 0.02])
    assert math.isfinite(wide.ratio) and math.isnan(wide.low) and "unbounded" in wide.reason
    single = stats.ratio_interval([0.5], [0.25])
    assert single.ratio == 2 and math.isnan(single.low)
