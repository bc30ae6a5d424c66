"""Metrics (docs/design.md, "Metrics") against hand-computed matrices and counts."""
import numpy as np
import pytest

from benchmark.core import metrics
from benchmark.run.store import METRIC_NAMES

# a[k][j]: accuracy on experience j after step k (0-based). a[1][0] = 0.95 > a[0][0] = 0.90:
# the best accuracy on experience 0 is reached after step 0, so forgetting and -BWT differ.
A3 = [
    [0.90, None, None],
    [0.95, 0.80, None],
    [0.60, 0.70, 0.85],
]
# a[2][1] = 0.95 > a[1][1] (max reached after the step) and a[3][2] = 0.85 > a[2][2]
# (negative forgetting: the final row is not part of the max).
A4 = [
    [1.00, None, None, None],
    [0.50, 0.90, None, None],
    [0.70, 0.95, 0.80, None],
    [0.40, 0.30, 0.85, 0.90],
]
approx = pytest.approx


class TestAverageAccuracy:
    def test_a3_per_step(self):
        assert metrics.average_accuracy(A3, 0) == approx(0.90)
        assert metrics.average_accuracy(A3, 1) == approx(0.875)  # (0.95 + 0.80) / 2
        assert metrics.average_accuracy(A3, 2) == approx(2.15 / 3)  # (0.6 + 0.7 + 0.85) / 3

    def test_final_is_last_step(self):
        assert metrics.average_accuracy(A3) == approx(0.716666666667)
        assert metrics.average_accuracy(A4) == approx(0.6125)  # (0.4 + 0.3 + 0.85 + 0.9) / 4

    def test_a4_per_step(self):
        assert metrics.average_accuracy(A4, 1) == approx(0.70)  # (0.5 + 0.9) / 2
        assert metrics.average_accuracy(A4, 2) == approx(0.816666666667)  # 2.45 / 3

    def test_average_incremental_accuracy(self):
        # (0.9 + 0.875 + 0.716667) / 3
        assert metrics.average_incremental_accuracy(A3) == approx(0.830555555556)
        # (1.0 + 0.7 + 0.816667 + 0.6125) / 4
        assert metrics.average_incremental_accuracy(A4) == approx(0.782291666667)


class TestForgettingAndBackwardTransfer:
    def test_forgetting_a3_uses_the_best_earlier_accuracy(self):
        # j=0: max(0.90, 0.95) - 0.60 = 0.35; j=1: 0.80 - 0.70 = 0.10; mean 0.225
        assert metrics.forgetting(A3) == approx(0.225)

    def test_bwt_a3_uses_the_accuracy_right_after_learning(self):
        # j=0: 0.60 - 0.90 = -0.30; j=1: 0.70 - 0.80 = -0.10; mean -0.20
        assert metrics.backward_transfer(A3) == approx(-0.20)

    def test_forgetting_a4(self):
        # j=0: max(1.0, 0.5, 0.7) - 0.4 = 0.6; j=1: max(0.9, 0.95) - 0.3 = 0.65;
        # j=2: 0.8 - 0.85 = -0.05; mean 1.2 / 3
        assert metrics.forgetting(A4) == approx(0.4)

    def test_bwt_a4(self):
        # (0.4 - 1.0) + (0.3 - 0.9) + (0.85 - 0.8) = -1.15, over 3
        assert metrics.backward_transfer(A4) == approx(-0.383333333333)

    def test_no_forgetting_when_nothing_changes(self):
        a = [[0.8, None], [0.8, 0.6]]
        assert metrics.forgetting(a) == approx(0.0)
        assert metrics.backward_transfer(a) == approx(0.0)


class TestOldNewAccuracy:
    def test_final_step(self):
        assert metrics.old_accuracy(A3) == approx(0.65)  # (0.6 + 0.7) / 2
        assert metrics.new_accuracy(A3) == approx(0.85)
        assert metrics.old_accuracy(A4) == approx(0.516666666667)  # (0.4 + 0.3 + 0.85) / 3
        assert metrics.new_accuracy(A4) == approx(0.90)

    def test_intermediate_step(self):
        assert metrics.old_accuracy(A4, 2) == approx(0.825)  # (0.7 + 0.95) / 2
        assert metrics.new_accuracy(A4, 2) == approx(0.80)

    def test_first_step_has_no_old_experiences(self):
        assert metrics.old_accuracy(A4, 0) is None
        assert metrics.new_accuracy(A4, 0) == approx(1.0)


class TestBaseAndClonedAccuracy:
    def test_final_row_split_at_the_first_experience(self):
        assert metrics.base_accuracy(A3) == approx(0.60)  # a[T][1]
        assert metrics.cloned_accuracy(A3) == approx(0.775)  # (0.7 + 0.85) / 2
        assert metrics.base_accuracy(A4) == approx(0.40)
        assert metrics.cloned_accuracy(A4) == approx(0.683333333333)  # (0.3 + 0.85 + 0.9) / 3

    def test_one_experience_has_no_cloned_accuracy(self):
        assert metrics.base_accuracy([[0.8]]) == approx(0.8)
        assert metrics.cloned_accuracy([[0.8]]) is None


class TestWeightedAccuracy:
    def test_pools_samples_not_experiences(self):
        # 30/40, 45/50, 10/20 correct: (30 + 45 + 10) / (40 + 50 + 20) = 85 / 110,
        # not the unweighted mean of 0.75, 0.9, 0.5 (0.716667)
        assert metrics.weighted_accuracy([30, 45, 10], [40, 50, 20]) == approx(0.772727272727)


class TestAccuracyMatrixFromPredictions:
    def test_matrix_entries_and_upper_triangle(self):
        labels = [np.array([0, 0, 1, 1]), np.array([2, 3])]
        predictions = [
            [np.array([0, 0, 1, 0])],  # step 0: 3 of 4 right on experience 0
            [np.array([0, 2, 2, 1]), np.array([2, 2])],  # step 1: 2 of 4; 1 of 2
        ]
        assert metrics.accuracy_matrix(predictions, labels) == [[0.75, None], [0.5, 0.5]]

    def test_agreement_counts(self):
        before = [np.array([1, 2, 3, 4]), np.array([5, 6])]
        after = [np.array([1, 0, 3, 4]), np.array([0, 0])]
        assert metrics.agreement_counts(before, after) == [3, 0]


class TestLocality:
    def test_step_locality_pools_samples_of_unequal_experiences(self):
        sizes = [10, 30, 60]
        agree = [None, [8], [10, 15]]
        # L_1 = 8 / 10 = 0.8; L_2 = (10 + 15) / (10 + 30) = 0.625
        # (the mean of per-experience fractions, (1.0 + 0.5) / 2 = 0.75, would be wrong)
        loc = metrics.step_locality(agree, sizes)
        assert loc[0] is None
        assert loc[1:] == [approx(0.8), approx(0.625)]
        assert metrics.mean_locality(loc) == approx(0.7125)  # (0.8 + 0.625) / 2

    def test_step_locality_ignores_the_current_experience(self):
        # agreement on experience k itself (the 30 samples) is not part of L_k
        loc = metrics.step_locality([None, [5, 30]], [20, 30])
        assert loc == [None, approx(0.25)]  # 5 / 20

    def test_original_locality(self):
        assert metrics.original_locality(45, 60) == approx(0.75)
        assert metrics.original_locality(60, 60) == approx(1.0)


class TestOneStepStream:
    """With T = 1 nothing can be forgotten or kept: those metrics are None, not 0."""

    A1 = [[0.8]]

    def test_accuracies(self):
        assert metrics.average_accuracy(self.A1) == approx(0.8)
        assert metrics.average_incremental_accuracy(self.A1) == approx(0.8)
        assert metrics.new_accuracy(self.A1) == approx(0.8)

    def test_undefined_metrics_are_none(self):
        assert metrics.forgetting(self.A1) is None
        assert metrics.backward_transfer(self.A1) is None
        assert metrics.old_accuracy(self.A1) is None
        assert metrics.step_locality([None], [10]) == [None]
        assert metrics.mean_locality([None]) is None

    def test_summary(self):
        s = metrics.summarize(self.A1, [[8]], [10], [None], None)
        assert s == {"final_accuracy": approx(0.8), "final_accuracy_weighted": approx(0.8),
                     "average_incremental_accuracy": approx(0.8),
                     "average_incremental_accuracy_weighted": approx(0.8), "forgetting": None,
                     "bwt": None, "locality": None, "original_locality": None,
                     "old_accuracy": None, "new_accuracy": approx(0.8),
                     "base_accuracy": approx(0.8), "cloned_accuracy": None}


# Correct counts behind A3 with test sets of 40, 50 and 20 samples (experiences of different
# sizes): row k holds correct[k][j] for j <= k.
SIZES3 = [40, 50, 20]
CORRECT3 = [[36, None, None], [38, 40, None], [24, 35, 17]]


class TestWeightedAverageIncrementalAccuracy:
    def test_weighted_accuracy_is_the_size_weighted_mean_of_a_row(self):
        # the counts are A3's: accuracy on each experience weighted by its test-set size
        for k, row in enumerate(CORRECT3):
            sizes = SIZES3[:k + 1]
            by_size = sum(A3[k][j] * sizes[j] for j in range(k + 1)) / sum(sizes)
            assert metrics.weighted_accuracy(row[:k + 1], sizes) == approx(by_size)

    def test_by_hand_with_experiences_of_different_sizes(self):
        # after step 1: 36 / 40 = 0.9; step 2: (38 + 40) / 90; step 3: (24 + 35 + 17) / 110
        expected = (0.9 + 78 / 90 + 76 / 110) / 3  # 0.819192
        value = metrics.weighted_average_incremental_accuracy(CORRECT3, SIZES3)
        assert value == approx(expected)
        assert value == approx(0.819191919192)
        # the mean over experiences differs: (0.9 + 0.875 + 0.716667) / 3
        assert metrics.average_incremental_accuracy(A3) == approx(0.830555555556)

    def test_equal_sizes_give_the_unweighted_value(self):
        sizes = [20, 20, 20]
        correct = [[round(20 * v) if v is not None else None for v in row] for row in A3]
        assert metrics.weighted_average_incremental_accuracy(correct, sizes) == approx(
            metrics.average_incremental_accuracy(A3))


class TestSummary:
    def test_names_and_values(self):
        # final-row test sets of 40, 50, 20 samples with 24, 35, 17 right (0.6, 0.7, 0.85)
        s = metrics.summarize(A3, CORRECT3, SIZES3, [None, 0.9, 0.5], 0.7)
        assert set(s) == set(metrics.ALL_METRIC_NAMES) == {
            "final_accuracy", "final_accuracy_weighted", "average_incremental_accuracy",
            "average_incremental_accuracy_weighted", "forgetting", "bwt", "locality",
            "original_locality", "old_accuracy", "new_accuracy", "base_accuracy",
            "cloned_accuracy"}
        assert set(METRIC_NAMES) == set(s) - {"average_incremental_accuracy_weighted",
                                              "base_accuracy", "cloned_accuracy"}
        assert s["final_accuracy"] == approx(0.716666666667)
        assert s["final_accuracy_weighted"] == approx(0.690909090909)  # 76 / 110
        assert s["average_incremental_accuracy"] == approx(0.830555555556)
        assert s["average_incremental_accuracy_weighted"] == approx(0.819191919192)
        assert s["forgetting"] == approx(0.225)
        assert s["bwt"] == approx(-0.20)
        assert s["locality"] == approx(0.7)  # (0.9 + 0.5) / 2
        assert s["original_locality"] == approx(0.7)
        assert s["old_accuracy"] == approx(0.65)
        assert s["new_accuracy"] == approx(0.85)
        assert s["base_accuracy"] == approx(0.60)
        assert s["cloned_accuracy"] == approx(0.775)
