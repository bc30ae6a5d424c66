"""Backbones as a sequence of blocks, a pooling step and a linear head.

Every backbone is a ``BlockNet``: ``forward(x) = head(pool(blocks[L-1](...blocks[0](x))))``.
A *position* p in 0..L is a block boundary: p = 0 is the input, p = L the last block's output.
``features(x, p)`` runs blocks 0..p-1 and ``forward_from(h, p)`` runs the rest (blocks p..L-1,
pool, head). ``widths[p]`` is the channel (or feature) count at boundary p. Methods that work on
any backbone (PNC, dynamic expansion) rely only on this interface.

Normalisation is ``bn`` (BatchNorm), ``gn`` (GroupNorm) or ``none``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import torch
from torch import nn

from benchmark.errors import UsageError


def norm_layer(kind: str, channels: int, dims: int) -> nn.Module:
    """A normalisation layer over ``channels`` for 1-d (MLP) or 2-d (conv) features."""
    if kind == "bn":
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
    if kind == "gn":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise UsageError(f"unknown norm {kind!r}; choose bn, gn or none")


class BlockNet(nn.Module):
    """Blocks, then ``pool`` (flatten or global average), then a linear ``head``."""

    def __init__(self, blocks: Sequence[nn.Module], widths: Sequence[int], pool: nn.Module,
                 num_classes: int, spatial: bool):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.widths: List[int] = list(widths)
        self.pool = pool
        self.head = nn.Linear(self.widths[-1], num_classes)
        self.spatial = spatial
        self.num_classes = num_classes

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def features(self, x: torch.Tensor, upto: int) -> torch.Tensor:
        """Output of blocks 0..upto-1 (the input itself when ``upto`` is 0)."""
        for block in self.blocks[:upto]:
            x = block(x)
        return x

    def forward_from(self, h: torch.Tensor, start: int) -> torch.Tensor:
        """Logits from the features at boundary ``start``."""
        for block in self.blocks[start:]:
            h = block(h)
        return self.head(self.pool(h))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate features (input of the head)."""
        return self.pool(self.features(x, self.depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(x, 0)


def mlp(num_classes: int, input_shape, hidden: Sequence[int] = (128, 128), norm: str = "bn"):
    """Linear -> norm -> ReLU blocks on the flattened input."""
    widths = [int(torch.tensor(input_shape).prod())] + list(hidden)
    blocks = [nn.Sequential(nn.Flatten(), nn.Linear(widths[0], widths[1]),
                            norm_layer(norm, widths[1], 1), nn.ReLU())]
    for i in range(1, len(hidden)):
        blocks.append(nn.Sequential(nn.Linear(widths[i], widths[i + 1]),
                                    norm_layer(norm, widths[i + 1], 1), nn.ReLU()))
    return BlockNet(blocks, widths, nn.Identity(), num_classes, spatial=False)


def _conv_block(c_in: int, c_out: int, norm: str, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm == "none"),
                         norm_layer(norm, c_out, 2), nn.ReLU())


def cnn(num_classes: int, input_shape, channels: Sequence[int] = (32, 64, 128), norm: str = "bn"):
    """Conv-norm-ReLU blocks, each halving the resolution after the first; global average pool."""
    widths = [input_shape[0]] + list(channels)
    blocks = [_conv_block(widths[i], widths[i + 1], norm, stride=1 if i == 0 else 2)
              for i in range(len(channels))]
    pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return BlockNet(blocks, widths, pool, num_classes, spatial=True)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs and a shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.n1 = norm_layer(norm, c_out, 2)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.n2 = norm_layer(norm, c_out, 2)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          norm_layer(norm, c_out, 2))

    def forward(self, x):
        out = torch.relu(self.n1(self.conv1(x)))
        return torch.relu(self.n2(self.conv2(out)) + self.shortcut(x))


def _resnet(num_classes, input_shape, stages: Sequence[int], width: int, norm: str,
            imagenet_stem: bool):
    c_in = input_shape[0]
    if imagenet_stem:
        stem = nn.Sequential(nn.Conv2d(c_in, width, 3, 1, 1, bias=False),
                             norm_layer(norm, width, 2), nn.ReLU(), nn.MaxPool2d(2))
    else:
        stem = nn.Sequential(nn.Conv2d(c_in, width, 3, 1, 1, bias=False),
                             norm_layer(norm, width, 2), nn.ReLU())
    blocks, widths = [stem], [c_in, width]
    c = width
    for i, n in enumerate(stages):
        c_out = width * (2 ** i)
        layer = [BasicBlock(c, c_out, 1 if i == 0 else 2, norm)]
        layer += [BasicBlock(c_out, c_out, 1, norm) for _ in range(n - 1)]
        blocks.append(nn.Sequential(*layer))
        widths.append(c_out)
        c = c_out
    pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return BlockNet(blocks, widths, pool, num_classes, spatial=True)


def reduced_resnet18(num_classes: int, input_shape, width: int = 20, norm: str = "bn"):
    """Reduced ResNet-18 with a CIFAR stem (3x3 conv, no max-pool), base width 20 (GEM's)."""
    return _resnet(num_classes, input_shape, (2, 2, 2, 2), width, norm, imagenet_stem=False)


def resnet18(num_classes: int, input_shape, width: int = 64, norm: str = "bn"):
    """ResNet-18 with a 3x3 stem and one max-pool (for 64x64 Tiny-ImageNet inputs)."""
    return _resnet(num_classes, input_shape, (2, 2, 2, 2), width, norm, imagenet_stem=True)


def resnet32(num_classes: int, input_shape, width: int = 16, norm: str = "bn"):
    """ResNet-32 for CIFAR (three stages of five basic blocks, widths 16/32/64)."""
    return _resnet(num_classes, input_shape, (5, 5, 5), width, norm, imagenet_stem=False)


BACKBONES: Dict[str, Callable[..., BlockNet]] = {
    "mlp": mlp,
    "cnn": cnn,
    "reduced-resnet18": reduced_resnet18,
    "resnet18": resnet18,
    "resnet32": resnet32,
}


def make_backbone(name: str, num_classes: int, input_shape, seed: int, **kwargs) -> BlockNet:
    """A backbone with initial weights theta_0 drawn from ``seed`` (global RNG left untouched)."""
    if name not in BACKBONES:
        raise UsageError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BACKBONES[name](num_classes, input_shape, **kwargs)
