"""Several copies of one network trained at once: their parameters and buffers stacked along a
leading *copy* dimension (``torch.func.stack_module_state``) and one forward pass for all
copies (``torch.func.vmap`` over ``torch.func.functional_call``).

Each copy gets its own batch. When all the batches have one length, every module runs as it is
(BatchNorm included: under ``vmap`` each copy's statistics come from its own batch, and its
running statistics and ``num_batches_tracked`` are updated in its own slice of the stacked
buffers). When lengths differ, the batches are padded to the longest and a 0/1 ``mask`` per row
says which rows are real; BatchNorm layers (``MaskedBatchNorm``) then take their batch
statistics over the real rows only, so a copy computes what it would alone on its real rows (up
to the order of float sums), and a copy without any real row (it has run out of batches) keeps
its running statistics and its ``num_batches_tracked``.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
State = tuple[torch.Tensor, dict[str, torch.Tensor]]


class MaskedBatchNorm(nn.Module):
    """A BatchNorm layer (same parameters, buffers, ``eps`` and ``momentum``) that also runs on
    padded batches. Without a ``mask`` it is ``F.batch_norm``. With one, in training mode, the
    mean and biased variance over the real rows (and every spatial position) normalise the
    input, and the running mean and variance move by ``momentum`` towards the mean and the
    unbiased variance (n / (n - 1), n the real values per channel); the new buffers are left in
    ``updates`` for the caller. In eval mode the running statistics normalise, mask or not."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        if not (norm.affine and norm.track_running_stats and norm.momentum is not None):
            raise ValueError("seed batching needs BatchNorm layers with affine parameters, "
                             "running statistics and a momentum")
        self.eps, self.momentum = norm.eps, norm.momentum
        self.weight, self.bias = norm.weight, norm.bias
        self.register_buffer("running_mean", norm.running_mean)
        self.register_buffer("running_var", norm.running_var)
        self.register_buffer("num_batches_tracked", norm.num_batches_tracked)
        self.mask: Optional[torch.Tensor] = None
        self.updates: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is None or not self.training:
            if self.training:
                self.num_batches_tracked.add_(1)
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                self.bias, self.training, self.momentum, self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        dims = [0] + list(range(2, x.dim()))
        rows = self.mask.reshape((-1,) + (1,) * (x.dim() - 1)).to(x.dtype)
        n = self.mask.sum() * (x[0, 0].numel() if x.dim() > 2 else 1)
        mean = (x * rows).sum(dims) / n.clamp(min=1)
        centred = x - mean.reshape(shape)
        var = (centred * centred * rows).sum(dims) / n.clamp(min=1)
        scale = torch.rsqrt(var + self.eps) * self.weight
        out = centred * scale.reshape(shape) + self.bias.reshape(shape)
        with torch.no_grad():
            active, m = n > 0, self.momentum
            unbiased = var.detach() * n / (n - 1).clamp(min=1)
            self.updates = {
                "running_mean": torch.where(
                    active, (1 - m) * self.running_mean + m * mean.detach(), self.running_mean),
                "running_var": torch.where(
                    active, (1 - m) * self.running_var + m * unbiased, self.running_var),
                "num_batches_tracked": self.num_batches_tracked + active.long(),
            }
        return out


def _maskable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the meta device with every BatchNorm a ``MaskedBatchNorm``."""
    base = copy.deepcopy(model).to("meta")
    for module in list(base.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, NORMS):
                setattr(module, child_name, MaskedBatchNorm(child))
    return base


def stackable(model: nn.Module) -> bool:
    """True when every BatchNorm layer of ``model`` can be masked (``MaskedBatchNorm``)."""
    try:
        _maskable(model)
    except ValueError:
        return False
    return True


class StackedModel:
    """``size`` networks of one architecture, stacked from ``models``: every parameter of every
    copy in one leaf tensor ``flat`` (``[size, parameters per copy]``; the gradients of all
    copies in ``flat.grad``), seen by name through ``params()``, and the ``buffers`` stacked by
    name (copy dimension first)."""

    def __init__(self, models: Sequence[nn.Module]):
        self.size = len(models)
        self.base = _maskable(models[0])
        self.norms = {name: m for name, m in self.base.named_modules()
                      if isinstance(m, MaskedBatchNorm)}
        params, buffers = stack_module_state(list(models))
        self.layout: list[tuple[str, torch.Size, int]] = [
            (name, value.shape[1:], value[0].numel()) for name, value in params.items()]
        self.flat = torch.cat([v.detach().reshape(self.size, -1) for v in params.values()],
                              1).requires_grad_()
        self.buffers: dict[str, torch.Tensor] = buffers

    def params(self, flat: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Every parameter by name, stacked (``[size, *shape]``), as views of ``flat``
        (default: the model's own)."""
        flat = self.flat if flat is None else flat
        parts = flat.split([count for _, _, count in self.layout], dim=1)
        return {name: part.view(self.size, *shape)
                for (name, shape, _), part in zip(self.layout, parts)}

    def _one(self, params, buffers, x, mask):
        for norm in self.norms.values():
            norm.mask = mask
        out = functional_call(self.base, (params, buffers), (x,))
        updates = {f"{name}.{key}": value for name, norm in self.norms.items()
                   for key, value in norm.updates.items()}
        for norm in self.norms.values():
            norm.mask, norm.updates = None, {}
        return out, updates

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, train: bool = True,
                state: Optional[State] = None) -> torch.Tensor:
        """Outputs ``[size, rows, ...]`` of every copy on its batch (``x``: ``[size, rows,
        ...]``; ``mask``: ``[size, rows]``, true on real rows, None when every row is real), in
        training or eval mode; in training mode the running statistics are updated. ``state``
        (a ``snapshot()``) runs a saved copy of the model instead, whose statistics are updated
        likewise."""
        flat, buffers = (self.flat, self.buffers) if state is None else state
        self.base.train(train)
        if mask is None:
            out, updates = vmap(lambda p, b, v: self._one(p, b, v, None))(
                self.params(flat), buffers, x)
        else:
            out, updates = vmap(self._one)(self.params(flat), buffers, x, mask)
        buffers.update(updates)
        return out

    def state_dict(self, s: int) -> dict[str, torch.Tensor]:
        """Copy ``s``'s parameters and buffers under the names of the original model."""
        both = {**self.params(), **self.buffers}
        return {name: tensor[s].detach().clone() for name, tensor in both.items()}

    def snapshot(self) -> State:
        """Detached copies of the stacked parameters (flat) and buffers."""
        return self.flat.detach().clone(), {k: v.clone() for k, v in self.buffers.items()}

    @torch.no_grad()
    def load(self, state: State) -> None:
        """Copies a ``snapshot()`` in (``flat`` stays the same leaf tensor)."""
        flat, buffers = state
        self.flat.copy_(flat)
        for name, value in buffers.items():
            self.buffers[name].copy_(value)
