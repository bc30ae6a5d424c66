"""Continual-learning metrics as pure functions of matrices and counts, and the one table that
describes them (``METRICS``: name, label, direction, range, unit), used by the runner, the
store, the reports and the tests. Definitions: docs/design.md, "Metrics".

Conventions: steps and experiences are 0-based in code (the text's 1..T); ``a`` is a T x T
accuracy matrix with ``a[k][j]`` = accuracy (fraction in [0, 1]) on the test set of experience j
after training step k, defined for j <= k and NaN (``None`` in records) above the diagonal.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

Matrix = Sequence[Sequence[Optional[float]]]


@dataclass(frozen=True)
class Metric:
    """A reported quantity: its record name, display label, direction and range.

    ``unit`` is ``fraction`` (stored in [0, 1], shown in points), ``count``, ``seconds`` or
    ``bytes``; ``low`` / ``high`` bound the values (None: unbounded). ``required``: every
    successful record carries it; a metric added after records were first written is not
    required (older records lack it and reports show it as missing).
    """

    name: str
    label: str
    higher_is_better: bool
    low: Optional[float]
    high: Optional[float]
    unit: str
    meaning: str
    required: bool = True


METRICS: tuple[Metric, ...] = (
    Metric("final_accuracy", "A_T", True, 0.0, 1.0, "fraction",
           "mean over experiences of the accuracy after the last step"),
    Metric("average_incremental_accuracy", "AIA", True, 0.0, 1.0, "fraction",
           "mean over steps k of A_k"),
    Metric("forgetting", "Forgetting", False, -1.0, 1.0, "fraction",
           "mean drop from the best earlier accuracy (Chaudhry et al. 2018)"),
    Metric("bwt", "BWT", True, -1.0, 1.0, "fraction",
           "backward transfer (Lopez-Paz & Ranzato 2017)"),
    Metric("locality", "L", True, 0.0, 1.0, "fraction",
           "mean over steps of the share of earlier test samples whose prediction is kept"),
    Metric("original_locality", "L_orig", True, 0.0, 1.0, "fraction",
           "share of e_1's test samples predicted as after step 1"),
    Metric("old_accuracy", "Old acc.", True, 0.0, 1.0, "fraction",
           "mean accuracy on the experiences before the last"),
    Metric("new_accuracy", "New acc.", True, 0.0, 1.0, "fraction",
           "accuracy on the last experience"),
    Metric("final_accuracy_weighted", "A_T weighted", True, 0.0, 1.0, "fraction",
           "accuracy over all seen test samples (Avalanche's Top1_Acc_Stream)"),
    Metric("average_incremental_accuracy_weighted", "AIA weighted", True, 0.0, 1.0,
           "fraction", "mean over steps k of the accuracy over all test samples seen after "
           "step k (iCaRL, PODNet)", required=False),
    Metric("base_accuracy", "Base acc.", True, 0.0, 1.0, "fraction",
           "accuracy on the first experience after the last step (cloning: the target's base "
           "classes)", required=False),
    Metric("cloned_accuracy", "Cloned acc.", True, 0.0, 1.0, "fraction",
           "mean accuracy on the experiences after the first, after the last step (cloning: "
           "the cloned classes)", required=False),
)
# The metrics every successful record must carry (the store refuses records without them).
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS if m.required)
# Every metric a record written now carries.
ALL_METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
COSTS: tuple[Metric, ...] = (
    Metric("parameters", "Params", False, 0.0, None, "count",
           "parameters of the predicting model after the last step"),
    Metric("model_bytes", "Model", False, 0.0, None, "bytes",
           "bytes of every parameter and buffer of the predicting model after the last step"),
    Metric("state_bytes", "State", False, 0.0, None, "bytes",
           "bytes kept for later steps besides the model after the last step (buffers, "
           "previous models, Fisher weights, statistics)"),
    Metric("total_bytes", "Memory", False, 0.0, None, "bytes",
           "model_bytes + state_bytes after the last step"),
    Metric("seconds", "Train", False, 0.0, None, "seconds",
           "training seconds summed over steps (source cost excluded)"),
)
METRICS_BY_NAME = {m.name: m for m in METRICS + COSTS}


def in_range(metric: Metric, value: Optional[float]) -> bool:
    """True when ``value`` is None or lies within the metric's range."""
    if value is None:
        return True
    return ((metric.low is None or value >= metric.low - 1e-12)
            and (metric.high is None or value <= metric.high + 1e-12))


def as_matrix(a: Matrix) -> np.ndarray:
    """A float array with NaN for missing (``None``) entries."""
    return np.array([[np.nan if v is None else float(v) for v in row] for row in a], dtype=float)


def average_accuracy(a: Matrix, k: Optional[int] = None) -> float:
    """A_k = mean over j <= k of a[k][j]; k defaults to the last step (A_T)."""
    m = as_matrix(a)
    k = len(m) - 1 if k is None else k
    return float(np.mean(m[k, : k + 1]))


def average_incremental_accuracy(a: Matrix) -> float:
    """AIA = mean over k of A_k."""
    return float(np.mean([average_accuracy(a, k) for k in range(len(a))]))


def forgetting(a: Matrix) -> Optional[float]:
    """Chaudhry et al. (2018): mean over j < T of max_{l in [j, T-1]} a[l][j] - a[T][j].

    ``None`` for a one-step stream (nothing can be forgotten).
    """
    m = as_matrix(a)
    t = len(m) - 1
    if t == 0:
        return None
    return float(np.mean([np.max(m[j:t, j]) - m[t, j] for j in range(t)]))


def backward_transfer(a: Matrix) -> Optional[float]:
    """Lopez-Paz & Ranzato (2017): BWT = mean over j < T of a[T][j] - a[j][j]; ``None`` if T = 1."""
    m = as_matrix(a)
    t = len(m) - 1
    if t == 0:
        return None
    return float(np.mean([m[t, j] - m[j, j] for j in range(t)]))


def old_accuracy(a: Matrix, k: Optional[int] = None) -> Optional[float]:
    """Mean over experiences j < k of a[k][j] (``None`` at the first step); k defaults to T."""
    m = as_matrix(a)
    k = len(m) - 1 if k is None else k
    return float(np.mean(m[k, :k])) if k > 0 else None


def new_accuracy(a: Matrix, k: Optional[int] = None) -> float:
    """a[k][k]: accuracy on the experience just learned; k defaults to T."""
    m = as_matrix(a)
    k = len(m) - 1 if k is None else k
    return float(m[k, k])


def base_accuracy(a: Matrix) -> float:
    """a[T][1]: accuracy on the first experience after the last step."""
    return float(as_matrix(a)[-1, 0])


def cloned_accuracy(a: Matrix) -> Optional[float]:
    """Mean over experiences j > 1 of a[T][j] (``None`` with one experience)."""
    m = as_matrix(a)
    return float(np.mean(m[-1, 1:])) if len(m) > 1 else None


def weighted_accuracy(correct: Sequence[int], total: Sequence[int]) -> float:
    """Sample-weighted accuracy over all seen test samples (Avalanche's Top1_Acc_Stream):
    sum of correct predictions over the sum of test-set sizes."""
    return float(np.sum(correct) / np.sum(total))


def weighted_average_incremental_accuracy(correct: Sequence[Sequence[Optional[int]]],
                                          sizes: Sequence[int]) -> float:
    """Mean over steps k of the sample-weighted accuracy after step k over every test sample of
    experiences 1..k: mean_k (sum_{j<=k} correct[k][j]) / (sum_{j<=k} sizes[j]).

    Equals AIA when all experiences have the same test size; differs once they do not (e.g.
    CIFAR-100 50 + 5 x 10), where it is the literature's (iCaRL, PODNet) average incremental
    accuracy over all seen classes.
    """
    return float(np.mean([weighted_accuracy(correct[k][:k + 1], sizes[:k + 1])
                          for k in range(len(correct))]))


def accuracy_matrix(predictions: Sequence[Sequence[np.ndarray]],
                    labels: Sequence[np.ndarray]) -> list[list[Optional[float]]]:
    """a[k][j] from ``predictions[k][j]`` (predicted labels on experience j's test set after step
    k, for j <= k) and ``labels[j]`` (its true labels)."""
    t = len(predictions)
    return [[float(np.mean(np.asarray(predictions[k][j]) == np.asarray(labels[j])))
             if j <= k else None for j in range(t)] for k in range(t)]


def agreement_counts(before: Sequence[np.ndarray], after: Sequence[np.ndarray]) -> list[int]:
    """Per experience, the number of test samples whose predicted label is the same in
    ``before`` and ``after`` (arrays of predicted labels for the same samples)."""
    return [int(np.sum(np.asarray(b) == np.asarray(c))) for b, c in zip(before, after)]


def step_locality(agree: Sequence[Optional[Sequence[int]]], sizes: Sequence[int]
                  ) -> list[Optional[float]]:
    """L_k = fraction of test samples of experiences j < k whose predicted label after step k
    equals the one after step k-1.

    ``agree[k][j]`` (j < k) counts such samples of experience j; ``agree[0]`` is ``None``.
    Returns T entries, ``None`` for the first step. Samples are pooled (sample-weighted).
    """
    out: list[Optional[float]] = [None]
    for k in range(1, len(agree)):
        out.append(float(np.sum(agree[k][:k]) / np.sum(sizes[:k])))
    return out


def mean_locality(step_loc: Sequence[Optional[float]]) -> Optional[float]:
    """L = mean over k >= 2 of L_k (``None`` for a one-step stream)."""
    vals = [v for v in step_loc[1:] if v is not None]
    return float(np.mean(vals)) if vals else None


def original_locality(agree_first: int, size_first: int) -> float:
    """L_orig = agreement between the final model and the model after step 1 on the test samples
    of experience 1, as a fraction."""
    return float(agree_first / size_first)


def summarize(a: Matrix, correct: Sequence[Sequence[Optional[int]]], sizes: Sequence[int],
              step_loc: Sequence[Optional[float]], orig_loc: Optional[float]) -> dict:
    """The record's ``metrics`` block (the names of ``METRICS``) from a run's accuracy matrix,
    correct-count matrix ``correct[k][j]`` (j <= k), test sizes and locality."""
    values = {
        "final_accuracy": average_accuracy(a),
        "final_accuracy_weighted": weighted_accuracy(correct[-1], sizes),
        "average_incremental_accuracy": average_incremental_accuracy(a),
        "average_incremental_accuracy_weighted": weighted_average_incremental_accuracy(
            correct, sizes),
        "forgetting": forgetting(a),
        "bwt": backward_transfer(a),
        "locality": mean_locality(step_loc),
        "original_locality": orig_loc,
        "old_accuracy": old_accuracy(a),
        "new_accuracy": new_accuracy(a),
        "base_accuracy": base_accuracy(a),
        "cloned_accuracy": cloned_accuracy(a),
    }
    return {name: values[name] for name in ALL_METRIC_NAMES}
