"""Training settings shared by every strategy of an experiment, and the plain supervised loop
used to train source experts.

``TrainSettings`` holds what a stream declares as its default training (epochs, batch size,
learning rate, optimizer) and what an experiment's ``[train]`` table overrides.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.core.errors import DivergenceError, UsageError
from benchmark.core.tensors import TensorLoader

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class TrainSettings:
    """Training settings shared by every strategy of an experiment (stream defaults apply)."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    eval_batch_size: int = 512

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        """A fresh optimizer of this kind over ``params``."""
        params = list(params)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay)
        raise UsageError(f"unknown optimizer {self.optimizer!r}; choose adam or sgd")


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: TrainSettings,
        generator: torch.Generator, augment=None, decode=None) -> nn.Module:
    """Plain supervised training (cross-entropy, ``settings.epochs`` passes) in place; the
    model is left in eval mode. DivergenceError if the last loss of an epoch is not finite."""
    optimizer = settings.make_optimizer(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    loader = TensorLoader(x, y, settings.batch_size, shuffle=True, generator=generator,
                          augment=augment, decode=decode)
    model.train()
    loss = None
    for _ in range(settings.epochs):
        for xb, yb, _ in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        if loss is not None and not bool(torch.isfinite(loss)):
            raise DivergenceError(f"expert training loss became {float(loss)}")
    model.eval()
    return model
