"""The training loop of seeds trained together (``benchmark.run.seed_batch``).

A ``SeedGroup`` holds, for each seed of a group, what its ordinary run holds: its stream data
(class order, split), its model (theta_0 from its seed), its shuffling generator (seeded with
the seed, as ``FastTemplate``'s) and its optimizer state; the models' weights are stacked
(``benchmark.core.stacked``) and stepped together (``benchmark.core.stacked_optim``).

An epoch draws each seed's batches from its own ``TensorLoader`` (its own permutation, decode and
augmentation, a final batch of one sample skipped), in the same order as its ordinary run. At
each iteration the seeds' next batches are stacked; when their lengths differ (the last batch of
an epoch, a seed that has run out of batches) they are padded and masked, so a seed computes on
its real rows only, and a seed with no batch left takes no optimizer step. Each seed's loss is
the mean cross-entropy over its real rows plus the strategy's terms
(``benchmark.run.seed_strategies``); the sum over seeds is differentiated once, which gives each
seed the gradient of its own loss (the seeds share no weight).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from benchmark.core.stacked import StackedModel
from benchmark.core.stacked_optim import stacked_optimizer
from benchmark.core.tensors import TensorLoader
from benchmark.core.training import TrainSettings


@dataclass
class Batch:
    """One batch per copy, stacked (copy first) and padded to the longest: ``mask`` is true on
    real rows, ``lengths`` counts them per copy."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    lengths: list[int]

    @property
    def active(self) -> torch.Tensor:
        """Per copy, whether it has a batch (on the host, for the optimizer)."""
        return torch.tensor([n > 0 for n in self.lengths])

    @property
    def model_mask(self) -> Optional[torch.Tensor]:
        """What ``StackedModel.forward`` takes: the mask, or None when every row is real."""
        return self.mask if len(set(self.lengths)) > 1 else None


def stacked_batch(batches: Sequence[Optional[list[torch.Tensor]]]) -> Batch:
    """The ``Batch`` of one loader batch per copy (None: the copy has none)."""
    real = next(b for b in batches if b is not None)
    xs = [b[0] if b is not None else real[0][:0] for b in batches]
    ys = [b[1] if b is not None else real[1][:0] for b in batches]
    lengths = [len(y) for y in ys]
    x, y = pad_sequence(xs, batch_first=True), pad_sequence(ys, batch_first=True)
    counts = torch.tensor(lengths, device=y.device)
    mask = torch.arange(y.shape[1], device=y.device)[None, :] < counts[:, None]
    return Batch(x, y, mask, lengths)


def masked_cross_entropy(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Per copy, the mean cross-entropy over its real rows (0 for a copy without any)."""
    ce = F.cross_entropy(logits.flatten(0, 1), batch.y.flatten(),
                         reduction="none").view_as(batch.y)
    return torch.where(batch.mask, ce, 0.0).sum(1) / batch.mask.sum(1).clamp(min=1)


class SeedGroup:
    """The seeds of one configuration, trained together (see the module docstring).

    ``errors[s]`` is the reason seed ``s`` stopped (its loss diverged), None while it trains.
    """

    def __init__(self, seeds: Sequence[int], data: list, models: list[nn.Module],
                 settings: TrainSettings, device: torch.device):
        self.seeds = list(seeds)
        self.size = len(self.seeds)
        self.data, self.models = data, models
        self.settings, self.device = settings, device
        self.stacked = StackedModel(models)
        self.optimizer = stacked_optimizer(settings, self.stacked.flat)
        self.theta0 = self.stacked.snapshot()
        self.generators = [torch.Generator().manual_seed(seed) for seed in self.seeds]
        self.errors: list[Optional[str]] = [None] * self.size

    def batches(self, loaders: Sequence[Optional[TensorLoader]]) -> Iterator[Batch]:
        """The next batch of every copy, stacked (``stacked_batch``), at each iteration until
        every loader is exhausted (a None loader: the copy sits the pass out)."""
        iterators = [iter(loader) if loader is not None else None for loader in loaders]
        while True:
            got = []
            for s, it in enumerate(iterators):
                batch = next(it, None) if it is not None else None
                if batch is None:
                    iterators[s] = None
                got.append(batch)
            if all(b is None for b in got):
                return
            yield stacked_batch(got)

    def train_step(self, strategy, k: int) -> list[list[dict]]:
        """Step ``k`` (0-based) trained for every seed still training; returns each seed's
        loss curve (``{"phase", "epoch", "loss"}`` per epoch, as ``FastTemplate`` keeps it)."""
        strategy.before_step(k)
        settings = self.settings
        loaders = []
        for s in range(self.size):
            x, y = strategy.train_set(s, k)
            loaders.append(TensorLoader(x, y, settings.batch_size, shuffle=True,
                                        generator=self.generators[s],
                                        augment=self.data[s].augment,
                                        decode=self.data[s].decode))
        flat = self.stacked.flat
        curves: list[list[dict]] = [[] for _ in range(self.size)]
        for epoch in range(settings.epochs):
            total = torch.zeros(self.size, device=self.device)
            counts = torch.zeros(self.size, dtype=torch.int64)
            live = [loader if self.errors[s] is None else None
                    for s, loader in enumerate(loaders)]
            for batch in self.batches(live):
                flat.grad = None
                logits = self.stacked.forward(batch.x, batch.model_mask, train=True)
                loss = masked_cross_entropy(logits, batch)
                extra = strategy.extra_loss(k, batch, logits)
                if extra is not None:
                    loss = loss + extra
                has_batch = batch.mask.any(1)
                torch.where(has_batch, loss, 0.0).sum().backward()
                self.optimizer.step(batch.active)
                total += torch.where(has_batch, loss.detach(), 0.0)
                counts += batch.active
            self._record_epoch(curves, total.cpu(), counts, k, epoch)
        flat.grad = None
        strategy.after_step(k)
        return curves

    def _record_epoch(self, curves, total, counts, k: int, epoch: int) -> None:
        """Appends each seed's mean epoch loss; a seed whose mean is not finite stops, with
        the ordinary run's reason."""
        for s in range(self.size):
            if self.errors[s] is not None or counts[s] == 0:
                continue
            mean = float(total[s]) / int(counts[s])
            curves[s].append({"phase": "train", "epoch": epoch + 1, "loss": mean})
            if not math.isfinite(mean):
                self.errors[s] = f"diverged: loss became {mean} at step {k + 1}"

    @torch.no_grad()
    def sync(self) -> None:
        """Copies every seed's stacked weights into its own model (for evaluation, saving)."""
        for s, model in enumerate(self.models):
            model.load_state_dict(self.stacked.state_dict(s))
