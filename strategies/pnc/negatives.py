"""Inputs synthesised for training PNC's ``gate`` routers, from what the protocol allows: the
step's own data and the frozen networks (no stored sample of an earlier step).

- ``inversion`` (model inversion, after DeepInversion, Yin et al. 2020): for each earlier step,
  inputs optimised from noise so that that step's classifier (the frozen target for step 1, the
  step's clone module otherwise) gives them its classes, while the batch statistics they induce
  in the classifier's BatchNorm layers match the layers' running statistics (which describe that
  step's data) and their values stay small. Step s's classifier is ``step_classifier``.
- ``mixing`` (patch shuffling): the step's inputs cut into a grid of patches (chunks for vector
  inputs) whose patches are exchanged between samples, keeping local statistics and breaking
  the classes' global structure.

Inversion runs as a training phase of its own (an optimiser over the inputs), so plugins see it.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


def step_classifier(net: nn.Module, index: int) -> tuple[Callable, list[nn.Module]]:
    """(logits over step ``index``'s classes as a function of the input, the BatchNorm layers
    whose running statistics describe that step's data). Step 0 is the target's."""
    target = net.target
    if index == 0:
        def logits(x):
            return target(x)[:, net.base_classes]
        return logits, [m for m in target.modules() if isinstance(m, BN_TYPES)]
    module = list(net.clones.values())[index - 1]

    def module_logits(x):
        return module(target.features(x, module.position))
    return module_logits, [m for m in module.modules() if isinstance(m, BN_TYPES)]


class BatchNormPrior:
    """Sum over BatchNorm layers (in eval mode) of ||mean_batch - running_mean||_2 +
    ||var_batch - running_var||_2 of their inputs, collected by forward hooks."""

    def __init__(self, layers: list[nn.Module]):
        self.terms: list[torch.Tensor] = []
        self.handles = [layer.register_forward_hook(self._hook) for layer in layers]

    def _hook(self, layer, inputs, _output):
        h = inputs[0]
        dims = [0] + list(range(2, h.dim()))
        mean, var = h.mean(dims), h.var(dims, unbiased=False)
        self.terms.append(torch.norm(mean - layer.running_mean, 2)
                          + torch.norm(var - layer.running_var, 2))

    def take(self) -> torch.Tensor:
        total = sum(self.terms) if self.terms else torch.zeros(())
        self.terms = []
        return total

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class InversionBatch:
    """A loader that yields the same batch of optimised inputs once per epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        yield [self.x, self.y, torch.zeros_like(self.y)]


def inversion_start(n_per_class: int, n_classes: int, input_shape, generator: torch.Generator,
                    device) -> tuple[nn.Parameter, torch.Tensor]:
    """Inputs drawn from N(0, 1) (the parameter to optimise) and their local class labels."""
    x = torch.randn(n_per_class * n_classes, *input_shape, generator=generator).to(device)
    y = torch.arange(n_classes, device=device).repeat_interleave(n_per_class)
    return nn.Parameter(x), y


def inversion_loss(logits: torch.Tensor, y: torch.Tensor, prior: BatchNormPrior,
                   x: torch.Tensor, bn_weight: float, l2_weight: float) -> torch.Tensor:
    """Cross-entropy towards the wanted classes + bn_weight x BatchNorm prior + l2_weight x
    mean squared input."""
    return (F.cross_entropy(logits, y) + bn_weight * prior.take()
            + l2_weight * x.pow(2).mean())


def mixed_negatives(x: torch.Tensor, n: int, generator: torch.Generator,
                    grid: int = 4) -> torch.Tensor:
    """``n`` inputs made of patches of the rows of ``x`` (a ``grid`` x ``grid`` grid for
    images, ``grid`` ** 2 chunks for vectors), each patch taken from a random row."""
    flat = x.dim() == 2
    images = x.view(len(x), 1, 1, -1) if flat else x
    _, c, h, w = images.shape
    rows = torch.linspace(0, h, min(grid, h) + 1).long() if not flat else torch.tensor([0, 1])
    pieces = grid * grid if flat else grid
    cols = torch.linspace(0, w, min(pieces, w) + 1).long()
    out = images.new_empty(n, c, h, w)
    for r0, r1 in zip(rows[:-1], rows[1:]):
        for c0, c1 in zip(cols[:-1], cols[1:]):
            pick = torch.randint(len(x), (n,), generator=generator).to(x.device)
            out[:, :, r0:r1, c0:c1] = images[pick, :, r0:r1, c0:c1]
    return out.view(n, -1) if flat else out
