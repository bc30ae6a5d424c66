"""The network PNC builds: the frozen target plus removable clone modules, one per step.

``ClonedNetwork(target)`` wraps a trained target (a ``BlockNet``, or a model seen as one by
``benchmark.core.models.as_block_net``) and never changes it: its parameters are frozen and it
stays in eval mode, so its BatchNorm statistics never move. ``add(step, module)`` inserts a
``CloneModule``; ``remove(step)`` deletes it, and with no module left the network returns
``target(x)`` itself. Design: docs/design.md, "PNC".
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from strategies.base import count_parameters

INPUT_FEATURES_MAX = 512  # larger inputs are average-pooled to 4x4 per channel for routing


def boundary_features(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Features of a ``BlockNet`` at every block boundary 0..L (index 0 is the stemmed input)."""
    feats = [net.stem(x)]
    for block in net.blocks:
        feats.append(block(feats[-1]))
    return feats


def channel_view(mask: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``mask`` (one value per channel) shaped to multiply features ``h``."""
    return mask.view(1, -1, *([1] * (h.dim() - 2)))


def make_adapter(c_in: int, c_out: int, spatial: bool, norm: bool) -> nn.Module:
    """Linear (or 1x1 conv) map, identity-initialised when the shapes match."""
    layer = nn.Conv2d(c_in, c_out, 1) if spatial else nn.Linear(c_in, c_out)
    if c_in == c_out:
        with torch.no_grad():
            layer.weight.zero_()
            layer.weight.view(c_out, c_in).copy_(torch.eye(c_out))
            layer.bias.zero_()
    if not norm:
        return layer
    return nn.Sequential(layer, nn.BatchNorm2d(c_out) if spatial else nn.BatchNorm1d(c_out))


class CloneModule(nn.Module):
    """One step's clone: adapter -> gated frozen source blocks -> pooling -> new head."""

    def __init__(self, source: nn.Module, masks: Sequence[torch.Tensor], position: int,
                 target_widths: Sequence[int], classes: Sequence[int], spatial: bool,
                 adapter_norm: bool):
        super().__init__()
        self.position = position
        self.adapter = make_adapter(target_widths[position], source.widths[position], spatial,
                                    adapter_norm)
        self.blocks = copy.deepcopy(source.blocks[position:])
        self.pool = copy.deepcopy(source.pool)
        for module in (self.blocks, self.pool):
            for p in module.parameters():
                p.requires_grad_(False)
        for i, mask in enumerate(masks[position:]):
            self.register_buffer(f"mask{i}", mask.float().clone())
        self.register_buffer("classes", torch.tensor(list(classes), dtype=torch.int64))
        self.head = nn.Linear(source.widths[-1], len(classes))
        with torch.no_grad():
            self.head.weight.copy_(source.head.weight[list(classes)])
            self.head.bias.copy_(source.head.bias[list(classes)])
        self.router: Optional[nn.Module] = None

    def train(self, mode: bool = True):
        super().train(mode)
        self.blocks.eval()  # the cloned source blocks keep the source's statistics
        self.pool.eval()
        return self

    def forward(self, target_feature: torch.Tensor) -> torch.Tensor:
        h = self.adapter(target_feature)
        for i, block in enumerate(self.blocks):
            h = block(h)
            h = h * channel_view(getattr(self, f"mask{i}"), h)
        return self.head(self.pool(h))

    def trainable_parameters(self) -> int:
        return count_parameters(self.adapter) + count_parameters(self.head)


class ClonedNetwork(nn.Module):
    """The frozen target plus removable clone modules, one per step (keys are 1-based steps)."""

    def __init__(self, target: nn.Module, base_classes: Sequence[int], routing: str = "gaussian",
                 router_space: str = "input"):
        super().__init__()
        self.target = target.eval()
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.register_buffer("base_classes", torch.tensor(list(base_classes), dtype=torch.int64))
        self.clones = nn.ModuleDict()
        self.routing = routing
        self.router_space = router_space
        self.base_router: Optional[nn.Module] = None

    def train(self, mode: bool = True):
        super().train(mode)
        self.target.eval()  # the target's BatchNorm statistics never change
        return self

    @property
    def steps(self) -> list[int]:
        return [int(k) for k in self.clones]

    def add(self, step: int, module: CloneModule) -> None:
        self.clones[str(step)] = module

    def remove(self, step: int) -> None:
        """Deletes the module of ``step`` (1-based); the others keep working."""
        if str(step) not in self.clones:
            raise KeyError(f"no cloned module for step {step}; present: {self.steps}")
        del self.clones[str(step)]

    def router_features(self, x: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """The routing space: flattened (pooled, for large) input and/or target embedding."""
        parts = []
        if "input" in self.router_space:
            flat = x.flatten(1)
            if flat.shape[1] > INPUT_FEATURES_MAX and x.dim() == 4:
                flat = F.adaptive_avg_pool2d(x, 4).flatten(1)
            parts.append(flat)
        if "target" in self.router_space:
            parts.append(self.target.pool(feats[-1]))
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self.clones):
            return self.target(x)
        feats = boundary_features(self.target, x)
        base_logits = self.target.head(self.target.pool(feats[-1]))[:, self.base_classes]
        step_logits = [base_logits] + [m(feats[m.position]) for m in self.clones.values()]
        step_classes = [self.base_classes] + [m.classes for m in self.clones.values()]
        out = torch.full((len(x), self.target.num_classes), float("-inf"), device=x.device,
                         dtype=base_logits.dtype)
        if self.routing == "logits":
            for logits, classes in zip(step_logits, step_classes):
                out[:, classes] = logits
            return out
        if self.routing == "energy":
            scores = torch.stack([torch.logsumexp(logit, dim=1) for logit in step_logits], dim=1)
        else:
            z = self.router_features(x, feats)
            routers = [self.base_router] + [m.router for m in self.clones.values()]
            scores = torch.stack([r.score(z) for r in routers], dim=1)
        log_step = torch.log_softmax(scores, dim=1)
        for s, (logits, classes) in enumerate(zip(step_logits, step_classes)):
            out[:, classes] = log_step[:, s:s + 1] + torch.log_softmax(logits, dim=1)
        return out
