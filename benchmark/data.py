"""Experiences held as tensors, and a loader that batches them by index (SPEC 7 fast path).

``TensorExperience`` is an Avalanche ``DatasetExperience``: code that expects Avalanche
experiences (plugins, user strategies) sees a regular classification dataset with
``targets`` and ``targets_task_labels`` (built on first access). Strategies of this suite read the
tensors directly through ``experience_tensors`` and batch them with ``TensorLoader``, which
avoids the per-sample collation of a ``DataLoader``.
"""
from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch
from avalanche.benchmarks.scenarios.dataset_scenario import DatasetExperience
from avalanche.benchmarks.utils.classification_dataset import (
    _make_taskaware_tensor_classification_dataset,
)

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class TensorExperience(DatasetExperience):
    """One experience: tensors ``x`` and ``y`` (original labels), its classes and its index."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        classes: Sequence[int],
        step: int,
        augment: Optional[Augment] = None,
    ):
        super().__init__(dataset=None, current_experience=step)
        self.x = x
        self.y = y
        self.classes_in_this_experience = list(classes)
        self.augment = augment

    @property
    def dataset(self):
        """The experience as an Avalanche classification dataset (CPU tensors, task label 0)."""
        if self._dataset is None:
            y = self.y.cpu()
            self._dataset = _make_taskaware_tensor_classification_dataset(
                self.x.cpu(), y, task_labels=0, targets=y
            )
        return self._dataset

    def __len__(self) -> int:
        return len(self.y)


def experience_tensors(experience) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of an experience: the tensors of a ``TensorExperience``, else its dataset collated
    once (transforms of the dataset's current group are applied at that time)."""
    if isinstance(experience, TensorExperience):
        return experience.x, experience.y
    cached = getattr(experience, "_clonebench_tensors", None)
    if cached is None:
        xs, ys = [], []
        for sample in experience.dataset:
            xs.append(torch.as_tensor(sample[0]))
            ys.append(int(sample[1]))
        cached = (torch.stack(xs), torch.tensor(ys, dtype=torch.int64))
        experience._clonebench_tensors = cached
    return cached


class TensorLoader:
    """Mini-batches ``[x, y, t]`` drawn from tensors by a shuffled index, on the tensors' device.

    A new permutation is drawn from ``generator`` at each pass; ``augment``, if given, is applied
    to each batch (on the device). When shuffling (training), a last batch holding a single
    sample is skipped (BatchNorm cannot train on one sample; the shuffle changes which one). Task labels ``t`` are zeros (class-incremental, no task id).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        generator: Optional[torch.Generator] = None,
        augment: Optional[Augment] = None,
    ):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.augment = augment
        self._zeros = torch.zeros(batch_size, dtype=torch.int64, device=y.device)

    def __len__(self) -> int:
        n = len(self.y)
        if not self.shuffle:
            return -(-n // self.batch_size)
        full, rest = divmod(n, self.batch_size)
        return full + (rest > 1)  # a final batch of one sample is dropped (BatchNorm)

    def __iter__(self) -> Iterator[List[torch.Tensor]]:
        n = len(self.y)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.y.device)
        else:
            order = None
        for start in range(0, min(n, len(self) * self.batch_size), self.batch_size):
            if order is None:
                xb, yb = self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
            else:
                idx = order[start:start + self.batch_size]
                xb, yb = self.x[idx], self.y[idx]
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            yield [xb, yb, self._zeros[: len(yb)]]
