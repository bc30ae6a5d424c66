"""Combining the log-scores of several parts of a model (PNC's steps, dynamic expansion's
branches) into one output over all classes."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def place_scores(out: torch.Tensor, columns: Sequence[torch.Tensor],
                 scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """``out`` with each part's scores written in its classes' columns (``columns[i]`` lists
    the classes of ``scores[i]``'s columns, in order). A class that several parts know (the
    same classes under a new domain, known classes coming back) gets the log of the sum of
    their exponentials (``logaddexp``): for log-probabilities, the mixture over the parts. A
    class known by one part gets its score unchanged."""
    filled: set[int] = set()
    for cols, z in zip(columns, scores):
        classes = [int(c) for c in cols.tolist()]
        if filled.isdisjoint(classes):
            out[:, cols] = z
        else:
            out[:, cols] = torch.logaddexp(out[:, cols], z)
        filled.update(classes)
    return out
