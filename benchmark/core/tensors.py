"""Experiences held as tensors, and a loader that batches them by index (the fast path of
docs/design.md, "Speed").

A ``TensorExperience`` is an Avalanche ``DatasetExperience``: code that expects Avalanche
experiences (plugins, user strategies) sees a regular classification dataset with ``targets`` and
``targets_task_labels`` (built on first access). The suite's strategies read the tensors
directly through ``experience_tensors`` and batch them with ``TensorLoader``, which avoids the
per-sample collation of a ``DataLoader``.

Stored and decoded inputs: an experience may keep its inputs in a compact *stored* form
(``x``, e.g. uint8 images) with a ``decode`` function that turns a batch of them into the float
inputs a model takes (e.g. ``(x / 255 - mean) / std``), on the batch's device. ``TensorLoader``
decodes batch by batch, so a data set stays compact on the host and on the device;
``experience_tensors`` decodes a whole experience (for passes that need all of it at once).
Without ``decode`` the stored inputs are the model's inputs.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Optional

import torch
from avalanche.benchmarks.scenarios.dataset_scenario import DatasetExperience
from avalanche.benchmarks.utils.classification_dataset import (
    _make_taskaware_tensor_classification_dataset,
)

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Decode = Callable[[torch.Tensor], torch.Tensor]


class TensorExperience(DatasetExperience):
    """One experience: stored inputs ``x``, labels ``y`` (original class ids), its classes, its
    index, and how batches are decoded (``decode``) and augmented (``augment``, training).

    ``pretrained`` marks the first experience of a scenario whose target arrives trained (the
    ``cloning`` scenario): a strategy trains no weights on it, and its data (possibly none) are
    all it may keep of the target's classes."""

    pretrained = False

    def __init__(self, x: torch.Tensor, y: torch.Tensor, classes: Sequence[int], step: int,
                 augment: Optional[Augment] = None, decode: Optional[Decode] = None):
        super().__init__(dataset=None, current_experience=step)
        self.x = x
        self.y = y
        self.classes_in_this_experience = list(classes)
        self.augment = augment
        self.decode = decode

    @property
    def dataset(self):
        """The experience as an Avalanche classification dataset of decoded CPU tensors, task
        label 0 (built on first access)."""
        if self._dataset is None:
            y = self.y.cpu()
            self._dataset = _make_taskaware_tensor_classification_dataset(
                decoded(self.x, self.decode).cpu(), y, task_labels=0, targets=y)
        return self._dataset

    def __len__(self) -> int:
        return len(self.y)


def decoded(x: torch.Tensor, decode: Optional[Decode], batch_size: int = 4096) -> torch.Tensor:
    """``decode`` applied to all of ``x`` (in batches, to bound temporary memory)."""
    if decode is None:
        return x
    if len(x) == 0:
        return decode(x)
    return torch.cat([decode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def experience_tensors(experience) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of an experience as model inputs: a ``TensorExperience``'s tensors decoded, else
    its dataset collated once (the transforms of the dataset's current group are applied at
    that time; ``FastTemplate`` re-reads such datasets every epoch instead)."""
    if isinstance(experience, TensorExperience):
        return decoded(experience.x, experience.decode), experience.y
    cached = getattr(experience, "_clonebench_tensors", None)
    if cached is None:
        xs, ys = [], []
        for sample in experience.dataset:
            xs.append(torch.as_tensor(sample[0]))
            ys.append(int(sample[1]))
        cached = (torch.stack(xs), torch.tensor(ys, dtype=torch.int64))
        experience._clonebench_tensors = cached
    return cached


def stored_tensors(experience) -> tuple[torch.Tensor, torch.Tensor, Optional[Decode]]:
    """(stored x, y, decode) of an experience: what a buffer keeps, and how to decode it."""
    if isinstance(experience, TensorExperience):
        return experience.x, experience.y, experience.decode
    x, y = experience_tensors(experience)
    return x, y, None


class TensorLoader:
    """Mini-batches ``[x, y, t]`` drawn from tensors by a shuffled index, on the tensors' device.

    A new permutation is drawn from ``generator`` at each pass; each batch is decoded
    (``decode``) and then, if given, augmented (``augment``) on the device. When shuffling
    (training), a last batch holding a single sample is skipped (BatchNorm cannot train on one
    sample; the shuffle changes which one). Task labels ``t`` are zeros (class-incremental, no
    task id).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = True,
                 generator: Optional[torch.Generator] = None, augment: Optional[Augment] = None,
                 decode: Optional[Decode] = None):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.augment = augment
        self.decode = decode
        self._zeros = torch.zeros(batch_size, dtype=torch.int64, device=y.device)

    def __len__(self) -> int:
        n = len(self.y)
        if not self.shuffle:
            return -(-n // self.batch_size)
        full, rest = divmod(n, self.batch_size)
        return full + (rest > 1)  # a final batch of one sample is dropped (BatchNorm)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator).to(self.y.device) \
            if self.shuffle else None
        for start in range(0, min(n, len(self) * self.batch_size), self.batch_size):
            if order is None:
                end = start + self.batch_size
                xb, yb = self.x[start:end], self.y[start:end]
            else:
                idx = order[start:start + self.batch_size]
                xb, yb = self.x[idx], self.y[idx]
            if self.decode is not None:
                xb = self.decode(xb)
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            yield [xb, yb, self._zeros[: len(yb)]]
