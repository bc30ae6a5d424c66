"""Optimizers over stacked parameters (``benchmark.core.stacked``): one optimizer per copy, run
for all copies at once, with the update formulas of ``torch.optim.Adam`` and
``torch.optim.SGD`` as ``TrainSettings.make_optimizer`` builds them (Adam: betas 0.9, 0.999,
eps 1e-8, L2 weight decay added to the gradient; SGD: momentum, no dampening, no Nesterov).

``step(active)`` updates only the copies whose ``active`` entry is true: the others keep their
parameters and their optimizer state (Adam's step count and moments, SGD's momentum buffer) as
if no step had happened, which is what a copy that has run out of batches must see.

The results are bitwise PyTorch's for SGD, and for Adam whenever the stepped copies have taken
the same number of steps (the update then uses PyTorch's own scalar operations); when their
counts differ, Adam's last multiply-add is rounded twice instead of once (one unit in the last
place).
"""
from __future__ import annotations

import torch

from benchmark.core.errors import UsageError
from benchmark.core.training import TrainSettings


def _per_copy(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` (one per copy) shaped to broadcast against the stacked tensor ``like``, at its
    dtype (masks stay boolean)."""
    dtype = torch.bool if values.dtype == torch.bool else like.dtype
    return values.reshape((-1,) + (1,) * (like.dim() - 1)).to(like.device, dtype)


class StackedAdam:
    """``torch.optim.Adam`` per copy of ``param`` (copies along dimension 0, gradient in
    ``param.grad``): with g the gradient (+ weight_decay * theta), t the copy's step count,
    m <- m + (1 - beta1) (g - m), v <- beta2 v + (1 - beta2) g^2 and
    theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)."""

    def __init__(self, param: torch.Tensor, lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param = param
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.reset()

    def reset(self) -> None:
        """A fresh state for every copy (no steps taken)."""
        self.steps = torch.zeros(len(self.param), dtype=torch.float64)
        self.exp_avg = torch.zeros_like(self.param, requires_grad=False)
        self.exp_avg_sq = torch.zeros_like(self.param, requires_grad=False)

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One update of the copies where ``active`` (bool, one per copy) is true."""
        beta1, beta2 = self.betas
        active = active.cpu()
        self.steps += active
        p, m, v = self.param, self.exp_avg, self.exp_avg_sq
        grad = p.grad if self.weight_decay == 0 else p.grad.add(p, alpha=self.weight_decay)
        if bool(active.all()):  # in place, as torch.optim.Adam
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            on = None
        else:
            on = _per_copy(active, p)
            m.copy_(torch.where(on, torch.lerp(m, grad, 1 - beta1), m))
            v.copy_(torch.where(on, (v * beta2).addcmul_(grad, grad, value=1 - beta2), v))
        counts = self.steps[active].unique()
        if len(counts) == 1:  # one step count: torch.optim.Adam's own scalar operations
            t = float(counts[0])
            denom = (v.sqrt() / (1 - beta2 ** t) ** 0.5).add_(self.eps)
            step_size = self.lr / (1 - beta1 ** t)
            if on is None:
                p.addcdiv_(m, denom, value=-step_size)
            else:
                p.copy_(torch.where(on, p.addcdiv(m, denom, value=-step_size), p))
            return
        t = self.steps.clamp(min=1)
        denom = v.sqrt().div_(_per_copy((1 - beta2 ** t) ** 0.5, p)).add_(self.eps)
        update = m.div(denom).mul_(_per_copy(self.lr / (1 - beta1 ** t), p))
        p.copy_(p - update if on is None else torch.where(on, p - update, p))


class StackedSGD:
    """``torch.optim.SGD`` per copy of ``param`` (copies along dimension 0): g the gradient
    (+ weight_decay * theta); with momentum mu the buffer b is g at the copy's first step and
    mu b + g after; theta <- theta - lr b (lr g without momentum)."""

    def __init__(self, param: torch.Tensor, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        self.param = param
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.reset()

    def reset(self) -> None:
        """A fresh state for every copy (no momentum buffer yet)."""
        self.started = torch.zeros(len(self.param), dtype=torch.bool)
        self.buffer = torch.zeros_like(self.param, requires_grad=False)

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One update of the copies where ``active`` (bool, one per copy) is true."""
        active = active.cpu()
        p = self.param
        on = None if bool(active.all()) else _per_copy(active, p)
        grad = p.grad if self.weight_decay == 0 else p.grad.add(p, alpha=self.weight_decay)
        if self.momentum != 0:
            grad = torch.where(_per_copy(self.started, p),
                               (self.buffer * self.momentum).add_(grad), grad)
            self.buffer.copy_(grad if on is None else torch.where(on, grad, self.buffer))
        stepped = p.add(grad, alpha=-self.lr)
        p.copy_(stepped if on is None else torch.where(on, stepped, p))
        self.started |= active


def stacked_optimizer(settings: TrainSettings, param: torch.Tensor):
    """The stacked counterpart of ``settings.make_optimizer`` over ``param``."""
    if settings.optimizer == "adam":
        return StackedAdam(param, settings.lr, settings.weight_decay)
    if settings.optimizer == "sgd":
        return StackedSGD(param, settings.lr, settings.momentum, settings.weight_decay)
    raise UsageError(f"unknown optimizer {settings.optimizer!r}; choose adam or sgd")
