"""What the scenarios share: a stream's data pooled back into one train and one test set, and
seeded, class-balanced draws from it.

Every draw is reproducible from (seed, class, purpose) alone (NumPy's ``default_rng``), so a
class's samples do not depend on which other classes a scenario uses.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from benchmark.data.base import StreamData


def pooled(data: StreamData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): every experience's samples in step order."""
    return (torch.cat([x for x, _ in data.train]), torch.cat([y for _, y in data.train]),
            torch.cat([x for x, _ in data.test]), torch.cat([y for _, y in data.test]))


def of_classes(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int]
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples whose label is in ``classes``, in their original order."""
    mask = torch.isin(y, torch.tensor(list(classes), dtype=y.dtype, device=y.device))
    return x[mask].contiguous(), y[mask].contiguous()


def shuffled_members(y: torch.Tensor, c: int, seed: int, purpose: int) -> np.ndarray:
    """Indices of class ``c``'s samples in ``y``, in the order of a permutation drawn from
    ``default_rng([seed, c, purpose])``."""
    members = np.flatnonzero(y.cpu().numpy() == c)
    return members[np.random.default_rng([int(seed), int(c), purpose]).permutation(len(members))]


def take(x: torch.Tensor, y: torch.Tensor, indices: Sequence[int]
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples at ``indices``, sorted (so the data set's order is kept)."""
    idx = torch.as_tensor(np.sort(np.asarray(indices, dtype=np.int64)), dtype=torch.int64)
    return x[idx.to(x.device)].contiguous(), y[idx.to(y.device)].contiguous()


def per_class_counts(total: int, classes: Sequence[int]) -> dict[int, int]:
    """``total`` samples shared over ``classes`` as equally as possible, the first classes in
    order taking one more when it does not divide."""
    share, extra = divmod(int(total), len(classes))
    return {int(c): share + (i < extra) for i, c in enumerate(classes)}


def balanced_draw(x: torch.Tensor, y: torch.Tensor, counts: dict[int, int], seed: int,
                  purpose: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class c, its first ``counts[c]`` samples in the order of ``shuffled_members`` (all of
    them when it has fewer)."""
    chosen = [shuffled_members(y, c, seed, purpose)[:n] for c, n in counts.items()]
    return take(x, y, np.concatenate(chosen) if chosen else [])
