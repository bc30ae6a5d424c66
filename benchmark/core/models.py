"""Backbones as a stem, a sequence of blocks, a pooling step and a linear head.

Every backbone is a ``BlockNet``:
``forward(x) = head(pool(blocks[L-1](...blocks[0](stem(x)))))``. The stem has no parameters
(``Flatten`` for MLPs, identity otherwise). A *position* p in 0..L is a block boundary: p = 0 is
the (stemmed) input, p = L the last block's output. ``features(x, p)`` runs the stem and blocks
0..p-1 and ``forward_from(h, p)`` runs the rest (blocks p..L-1, pool, head). ``widths[p]`` is the
channel (or feature) count at boundary p. Methods that work on any backbone (PNC, dynamic
expansion) rely only on this interface; ``as_block_net`` gives it to a user's ``nn.Sequential``
or to any model that declares ``blocks`` and ``head``.

Backbones are registered by name in ``BACKBONES`` (``clonebench list`` prints them).
Normalisation is ``bn`` (BatchNorm), ``gn`` (GroupNorm) or ``none``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from benchmark.core.errors import UsageError
from benchmark.core.options import Option, Registry


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
    """A parameter-free ``stem``, blocks, then ``pool`` (identity or global average), then a
    linear ``head`` (a new one over ``num_classes`` unless ``head`` is given)."""

    def __init__(self, blocks: Sequence[nn.Module], widths: Sequence[int], pool: nn.Module,
                 num_classes: int, spatial: bool, stem: Optional[nn.Module] = None,
                 head: Optional[nn.Linear] = None):
        super().__init__()
        self.stem = stem if stem is not None else nn.Identity()
        self.blocks = nn.ModuleList(blocks)
        self.widths: list[int] = list(widths)
        self.pool = pool
        self.head = head if head is not None else nn.Linear(self.widths[-1], num_classes)
        self.spatial = spatial
        self.num_classes = num_classes

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def features(self, x: torch.Tensor, upto: int) -> torch.Tensor:
        """Output of blocks 0..upto-1 (the stemmed input when ``upto`` is 0)."""
        x = self.stem(x)
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
        return self.forward_from(self.stem(x), 0)


def mlp(num_classes: int, input_shape, hidden: Sequence[int] = (128, 128), norm: str = "bn"):
    """Linear -> norm -> ReLU blocks on the flattened input."""
    widths = [int(torch.tensor(input_shape).prod())] + list(hidden)
    blocks = [nn.Sequential(nn.Linear(widths[i], widths[i + 1]),
                            norm_layer(norm, widths[i + 1], 1), nn.ReLU())
              for i in range(len(hidden))]
    return BlockNet(blocks, widths, nn.Identity(), num_classes, spatial=False,
                    stem=nn.Flatten())


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


NORM = Option("norm", str, "bn", "normalisation layers", choices=("bn", "gn", "none"))


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: ``build(num_classes, input_shape, **options)`` and the inputs it
    takes; ``options`` are what a backbone string may set after its name."""

    name: str
    build: Callable[..., BlockNet]
    summary: str
    inputs: str
    options: tuple[Option, ...] = ()


BACKBONES: Registry[BackboneSpec] = Registry("backbone")
for _spec in (
    BackboneSpec("mlp", mlp, "hidden layers of 128 and 128 (Linear-BN-ReLU) on the flattened "
                 "input", "any shape",
                 (Option("hidden", str, "128-128", "hidden widths, separated by -"), NORM)),
    BackboneSpec("cnn", cnn, "three conv-BN-ReLU blocks (32-64-128 channels), global pooling",
                 "C x H x W, H and W >= 4",
                 (Option("channels", str, "32-64-128", "channels of the conv blocks, separated "
                         "by -"), NORM)),
    BackboneSpec("reduced-resnet18", reduced_resnet18, "ResNet-18 with a CIFAR stem, width 20",
                 "C x H x W, H and W >= 8",
                 (Option("width", int, 20, "base width", low=1), NORM)),
    BackboneSpec("resnet18", resnet18, "ResNet-18, width 64, one max-pool (Tiny-ImageNet)",
                 "C x H x W, H and W >= 16",
                 (Option("width", int, 64, "base width", low=1), NORM)),
    BackboneSpec("resnet32", resnet32, "ResNet-32 for CIFAR (widths 16/32/64)",
                 "C x H x W, H and W >= 4",
                 (Option("width", int, 16, "base width", low=1), NORM)),
):
    BACKBONES.add(_spec)


def parse_backbone(text: str) -> tuple[BackboneSpec, dict[str, Any]]:
    """A backbone string ``NAME`` or ``NAME:OPTION=VALUE,...`` (e.g. ``cnn:channels=16-32-64``)
    as (its spec, the options it sets, validated); UsageError naming the problem."""
    if not isinstance(text, str):
        raise UsageError(f"bad backbone {text!r}: expected a name such as mlp or "
                         "cnn:channels=16-32-64")
    name, _, rest = text.partition(":")
    spec = BACKBONES.get(name.strip())
    given = {}
    for item in (part.strip() for part in rest.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"bad backbone {text!r}: expected NAME:OPTION=VALUE,... after the "
                             "name")
        given[key.strip()] = value.strip()
    known = {o.name: o for o in spec.options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r} for backbone {spec.name!r}; known: "
                         f"{', '.join(known) or 'none'}")
    options = {k: known[k].parse(v, f"backbone {spec.name}") for k, v in given.items()}
    for key in ("hidden", "channels"):
        if key in options:
            options[key] = parse_widths(options[key], f"{spec.name}.{key}")
    return spec, options


def parse_widths(text: str, where: str) -> tuple[int, ...]:
    """``"16-32-64"`` as (16, 32, 64); UsageError unless every width is a positive integer."""
    try:
        widths = tuple(int(w) for w in text.split("-"))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise UsageError(f"bad value {text!r} for {where}: expected positive integers "
                         "separated by -, e.g. 16-32-64")
    return widths


def canonical_backbone(text: str) -> str:
    """The backbone string with its options sorted and validated (the name alone without
    options), so that equal backbones have equal strings."""
    spec, options = parse_backbone(text)
    if not options:
        return spec.name
    shown = ",".join(f"{k}={'-'.join(map(str, v)) if isinstance(v, tuple) else v}"
                     for k, v in sorted(options.items()))
    return f"{spec.name}:{shown}"


def make_backbone(name: str, num_classes: int, input_shape, seed: int, **kwargs) -> BlockNet:
    """A backbone (a name, or ``NAME:OPTION=VALUE,...``) with initial weights theta_0 drawn
    from ``seed`` (global RNG left untouched)."""
    spec, options = parse_backbone(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build(num_classes, input_shape, **{**options, **kwargs})


def _width(feature: torch.Tensor) -> int:
    return int(feature.shape[1]) if feature.dim() > 1 else 1


@torch.no_grad()
def as_block_net(model: nn.Module, example: torch.Tensor) -> BlockNet:
    """``model`` seen as a ``BlockNet`` that shares its modules (nothing is copied):

    - a ``BlockNet`` is returned as it is;
    - a model with ``blocks`` (a sequence of modules) and a linear ``head`` (optionally ``stem``
      and ``pool``) is viewed through them;
    - an ``nn.Sequential`` whose last child is an ``nn.Linear``: the other children are the
      blocks, the last the head.

    ``example`` (a small input batch) sets the widths at every boundary. UsageError otherwise.
    """
    if isinstance(model, BlockNet):
        return model
    stem, pool = getattr(model, "stem", None), getattr(model, "pool", None)
    if hasattr(model, "blocks") and isinstance(getattr(model, "head", None), nn.Linear):
        blocks, head = list(model.blocks), model.head
    elif isinstance(model, nn.Sequential) and len(model) > 1 and isinstance(model[-1], nn.Linear):
        blocks, head = list(model)[:-1], model[-1]
    else:
        raise UsageError(
            f"a {type(model).__name__} does not show its blocks: pass an nn.Sequential whose "
            "last child is an nn.Linear (the head), or a model with `blocks` (a list of "
            "modules) and a linear `head`")
    was_training = model.training
    view = BlockNet(blocks, [1], pool if pool is not None else nn.Identity(),
                    head.out_features, spatial=False, stem=stem, head=head).eval()
    feats = [view.stem(example[:2])]
    for block in view.blocks:
        feats.append(block(feats[-1]))
    view.widths = [_width(f) for f in feats]
    view.spatial = any(f.dim() == 4 for f in feats)
    model.train(was_training)
    view.train(was_training)
    return view
