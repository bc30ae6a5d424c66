"""Evaluation after each step, and what a record keeps of it.

After step k the model predicts, for every test sample of experiences 1..k, the arg-max of its
logits over the classes seen so far (unseen classes are masked: class-incremental, no task
label). Predictions are made per sample: the test set is cut into batches only to bound memory,
and a model in eval mode gives each sample the same prediction whatever its batch.
``StepEvaluation`` accumulates the correct counts and the agreement of predictions between
consecutive steps, from which the metrics are computed (``benchmark.core.metrics``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import torch

from benchmark.core import metrics
from benchmark.core.tensors import decoded


@torch.no_grad()
def predict(strategy, x: torch.Tensor, seen: Sequence[int], batch_size: int,
            decode=None, step: Optional[int] = None) -> np.ndarray:
    """Predicted labels: arg-max of the strategy's logits over the ``seen`` classes only
    (``x`` in its stored form, decoded batch by batch). ``step`` (0-based) is the experience
    the samples come from; only references that are told it by definition (an oracle) use it."""
    preds = []
    seen_t = torch.tensor(sorted(seen), device=x.device)
    for start in range(0, len(x), batch_size):
        logits = strategy.predict_logits(decoded(x[start:start + batch_size], decode),
                                         step=step)
        preds.append(seen_t[logits[:, seen_t].argmax(dim=1)])
    return torch.cat(preds).cpu().numpy() if preds else np.zeros(0, dtype=np.int64)


class StepEvaluation:
    """Predictions of every step on the test sets seen so far, and the counts derived."""

    def __init__(self, labels: Sequence[np.ndarray]):
        self.labels = list(labels)
        self.sizes = [len(y) for y in self.labels]
        n = len(self.labels)
        self.correct: list[list[Optional[int]]] = [[None] * n for _ in range(n)]
        self.agree: list[Optional[list[int]]] = [None]
        self.history: list[list[np.ndarray]] = []

    def add(self, preds: list[np.ndarray]) -> None:
        """Predictions after the next step on experiences 1..k (k = len(preds))."""
        k = len(preds) - 1
        for j in range(k + 1):
            self.correct[k][j] = int(np.sum(preds[j] == self.labels[j]))
        if k > 0:
            self.agree.append(metrics.agreement_counts(self.history[-1][:k], preds[:k]))
        self.history.append(preds)

    def record(self) -> dict:
        """The record's evaluation fields (matrices, locality data, metrics)."""
        acc = metrics.accuracy_matrix(self.history, self.labels)
        step_loc = metrics.step_locality(self.agree, self.sizes)
        n = len(self.history)
        orig_agree = metrics.agreement_counts(self.history[0][:1], self.history[-1][:1])[0]
        orig_loc = metrics.original_locality(orig_agree, self.sizes[0]) if n > 1 else None
        return {
            "test_sizes": self.sizes,
            "correct_matrix": self.correct,
            "accuracy_matrix": acc,
            "agreement_counts": self.agree,
            "original_agreement": orig_agree,
            "step_locality": step_loc,
            "original_locality": orig_loc,
            "metrics": metrics.summarize(acc, self.correct[:n], self.sizes, step_loc,
                                         orig_loc),
        }
