"""Structured pruning of copied source blocks to the channels a clone keeps.

A gated clone multiplies the dropped channels of every block output by zero; the pruned clone
computes the same function without them: every layer keeps only the rows (output channels) and
columns (input channels) that can reach a kept output. ``prune_block(block, keep_in, keep_out)``
returns a copy of ``block`` that takes only the channels ``keep_in`` of its input (the others are
zero in the gated network) and returns only the channels ``keep_out`` of its output.

Supported layers: ``Linear``, ``Conv2d``, ``BatchNorm1d/2d``, parameter-free layers (ReLU,
pooling, flatten, identity), ``nn.Sequential`` of these, and the ResNet ``BasicBlock`` of
``benchmark.core.models`` (its inner channels are all kept: gates sit on block outputs only; an
identity shortcut becomes a ``ChannelSelect``). Anything else (e.g. GroupNorm, whose groups mix
channels) is not pruned: ``PruneError``, and the clone then keeps the block whole and masked.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from benchmark.core.models import BasicBlock

PASS_THROUGH = (nn.ReLU, nn.Identity, nn.Flatten, nn.MaxPool2d, nn.AvgPool2d,
                nn.AdaptiveAvgPool2d, nn.Dropout)


class PruneError(ValueError):
    """A block holds a layer whose channels cannot be pruned exactly."""


class ChannelSelect(nn.Module):
    """Picks output channels from input channels by index; -1 gives a zero channel (an input
    channel the gated network had zeroed)."""

    def __init__(self, index: torch.Tensor):
        super().__init__()
        self.register_buffer("index", index.to(torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros_like(x[:, :1])
        padded = torch.cat([x, zero], dim=1)
        index = torch.where(self.index < 0, torch.full_like(self.index, x.shape[1]), self.index)
        return padded.index_select(1, index)


def _positions(keep: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(keep, as_tuple=False).flatten()


def _linear(layer: nn.Linear, keep_in: torch.Tensor, keep_out: torch.Tensor) -> nn.Linear:
    i, o = _positions(keep_in), _positions(keep_out)
    out = nn.Linear(len(i), len(o), bias=layer.bias is not None).to(layer.weight.device)
    with torch.no_grad():
        out.weight.copy_(layer.weight[o][:, i])
        if layer.bias is not None:
            out.bias.copy_(layer.bias[o])
    return out


def _conv(layer: nn.Conv2d, keep_in: torch.Tensor, keep_out: torch.Tensor) -> nn.Conv2d:
    if layer.groups != 1:
        raise PruneError("grouped convolutions are not pruned")
    i, o = _positions(keep_in), _positions(keep_out)
    out = nn.Conv2d(len(i), len(o), layer.kernel_size, layer.stride, layer.padding,
                    layer.dilation, bias=layer.bias is not None,
                    padding_mode=layer.padding_mode).to(layer.weight.device)
    with torch.no_grad():
        out.weight.copy_(layer.weight[o][:, i])
        if layer.bias is not None:
            out.bias.copy_(layer.bias[o])
    return out


def _batchnorm(layer: nn.modules.batchnorm._BatchNorm, keep: torch.Tensor) -> nn.Module:
    o = _positions(keep)
    out = copy.deepcopy(layer)
    out.num_features = len(o)
    with torch.no_grad():
        if layer.affine:
            out.weight = nn.Parameter(layer.weight[o].clone())
            out.bias = nn.Parameter(layer.bias[o].clone())
        if layer.track_running_stats:
            out.running_mean = layer.running_mean[o].clone()
            out.running_var = layer.running_var[o].clone()
    return out


def _out_channels(layer: nn.Module) -> Optional[int]:
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels
    return None


def _sequential(block: nn.Sequential, keep_in: torch.Tensor, keep_out: torch.Tensor
                ) -> nn.Sequential:
    """Prunes a chain whose channel-changing layers are Linear/Conv2d/BasicBlock: the last such
    layer's outputs are cut to ``keep_out``, inner ones keep all their channels."""
    children = list(block.children())
    changing = [i for i, c in enumerate(children)
                if _out_channels(c) is not None or isinstance(c, (BasicBlock, nn.Sequential))]
    last = changing[-1] if changing else None
    layers, current = [], keep_in
    for i, child in enumerate(children):
        if i == last:
            target = keep_out
        elif _out_channels(child) is not None:
            target = torch.ones(_out_channels(child), dtype=torch.bool, device=keep_in.device)
        elif isinstance(child, (BasicBlock, nn.Sequential)):
            target = torch.ones(_block_out_channels(child), dtype=torch.bool,
                                device=keep_in.device)
        else:
            target = current
        layers.append(prune_block(child, current, target))
        current = target
    return nn.Sequential(*layers)


def _block_out_channels(block: nn.Module) -> int:
    if isinstance(block, BasicBlock):
        return block.conv2.out_channels
    outs = [_block_out_channels(c) if isinstance(c, (BasicBlock, nn.Sequential))
            else _out_channels(c) for c in block.children()]
    outs = [o for o in outs if o is not None]
    if not outs:
        raise PruneError("a block without a channel-changing layer")
    return outs[-1]


def _basic_block(block: BasicBlock, keep_in: torch.Tensor, keep_out: torch.Tensor
                 ) -> nn.Module:
    mid = torch.ones(block.conv1.out_channels, dtype=torch.bool, device=keep_in.device)
    out = copy.copy(block)
    nn.Module.__init__(out)
    out.conv1 = _conv(block.conv1, keep_in, mid)
    out.n1 = prune_block(block.n1, mid, mid)
    out.conv2 = _conv(block.conv2, mid, keep_out)
    out.n2 = prune_block(block.n2, keep_out, keep_out)
    if isinstance(block.shortcut, nn.Identity):
        position = torch.cumsum(keep_in.long(), 0) - 1
        index = torch.where(keep_in, position, torch.full_like(position, -1))
        out.shortcut = ChannelSelect(index[keep_out])
    else:
        out.shortcut = _sequential(block.shortcut, keep_in, keep_out)
    return out


def prune_block(block: nn.Module, keep_in: torch.Tensor, keep_out: torch.Tensor) -> nn.Module:
    """A copy of ``block`` restricted to input channels ``keep_in`` and output channels
    ``keep_out`` (boolean masks); PruneError for a layer that cannot be pruned exactly."""
    if isinstance(block, nn.Linear):
        return _linear(block, keep_in, keep_out)
    if isinstance(block, nn.Conv2d):
        return _conv(block, keep_in, keep_out)
    if isinstance(block, nn.modules.batchnorm._BatchNorm):
        return _batchnorm(block, keep_out)
    if isinstance(block, BasicBlock):
        return _basic_block(block, keep_in, keep_out)
    if isinstance(block, nn.Sequential):
        return _sequential(block, keep_in, keep_out)
    if isinstance(block, PASS_THROUGH):
        if not torch.equal(keep_in, keep_out):
            raise PruneError(f"{type(block).__name__} cannot change the kept channels")
        return copy.deepcopy(block)
    raise PruneError(f"{type(block).__name__} is not pruned")
