"""The network PNC builds: the frozen target plus removable clone modules, one per step.

``ClonedNetwork(target)`` wraps a trained target (a ``BlockNet``, or a model seen as one by
``benchmark.core.models.as_block_net``) and never changes it: its parameters are frozen and it
stays in eval mode, so its BatchNorm statistics never move. ``add(step, module)`` inserts a
``CloneModule``; ``remove(step)`` deletes it with its router, and with no module left the network
returns ``target(x)`` itself. Design: docs/design.md, "PNC".

A ``CloneModule`` holds: an adapter from the target's features at its position p to the source's
kept channels there, copies of the source's blocks p..L-1 pruned to the kept channels
(``strategies.pnc.prune``; a block that cannot be pruned exactly is copied whole and masked),
the source's pooling, and a head over the step's classes. Its ``router`` scores how much an
input belongs to its step (``strategies.pnc.routers``).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

from strategies.base import count_parameters
from strategies.mixture import place_scores
from strategies.pnc.prune import PruneError, prune_block
from strategies.pnc.routers import route, router_input


def boundary_features(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Features of a ``BlockNet`` at every block boundary 0..L (index 0 is the stemmed input)."""
    feats = [net.stem(x)]
    for block in net.blocks:
        feats.append(block(feats[-1]))
    return feats


def channel_view(mask: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``mask`` (one value per channel) shaped to multiply features ``h``."""
    return mask.view(1, -1, *([1] * (h.dim() - 2)))


def make_adapter(c_in: int, keep: torch.Tensor, spatial: bool, norm: bool) -> nn.Module:
    """A linear (1x1 conv for maps) map from ``c_in`` target channels to the kept source
    channels; when both networks have the same width, it starts as the identity restricted to
    the kept channels (target and source share their initial weights)."""
    c_out = int(keep.sum())
    layer = nn.Conv2d(c_in, c_out, 1) if spatial else nn.Linear(c_in, c_out)
    if c_in == len(keep):
        with torch.no_grad():
            layer.weight.zero_()
            eye = torch.eye(c_in, device=layer.weight.device)[keep.to(layer.weight.device)]
            layer.weight.view(c_out, c_in).copy_(eye)
            layer.bias.zero_()
    if not norm:
        return layer
    return nn.Sequential(layer, nn.BatchNorm2d(c_out) if spatial else nn.BatchNorm1d(c_out))


class MaskedBlock(nn.Module):
    """A whole source block whose output channels outside ``mask`` are zeroed (the fallback
    when a block cannot be pruned exactly); it takes the full input width."""

    def __init__(self, block: nn.Module, keep_in: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.block = copy.deepcopy(block)
        self.register_buffer("keep_in", keep_in.clone())
        self.register_buffer("mask", mask.float().clone())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        full = h.new_zeros(h.shape[0], len(self.keep_in), *h.shape[2:])
        full[:, self.keep_in] = h
        out = self.block(full)
        return (out * channel_view(self.mask, out))[:, self.mask.bool()]


class CloneModule(nn.Module):
    """One step's clone: adapter -> pruned frozen source blocks p..L-1 -> pooling -> new head."""

    def __init__(self, source: nn.Module, masks: Sequence[torch.Tensor], position: int,
                 target_width: int, classes: Sequence[int], spatial: bool,
                 adapter_norm: bool):
        super().__init__()
        self.position = position
        device = masks[0].device
        keeps = [torch.ones(source.widths[0], dtype=torch.bool, device=device)] + \
            [m.bool() for m in masks]
        self.adapter = make_adapter(target_width, keeps[position], spatial, adapter_norm)
        blocks, self.pruned = [], True
        for i in range(position, len(source.blocks)):
            try:
                blocks.append(prune_block(source.blocks[i], keeps[i], keeps[i + 1]))
            except PruneError:
                blocks.append(MaskedBlock(source.blocks[i], keeps[i], keeps[i + 1]))
                self.pruned = False
        self.blocks = nn.ModuleList(blocks)
        self.pool = copy.deepcopy(source.pool)
        for module in (self.blocks, self.pool):
            for p in module.parameters():
                p.requires_grad_(False)
        self.register_buffer("classes", torch.tensor(list(classes), dtype=torch.int64))
        kept = keeps[-1]
        self.head = nn.Linear(int(kept.sum()), len(classes))
        with torch.no_grad():
            rows = source.head.weight[list(classes)]
            self.head.weight.copy_(rows[:, kept.to(rows.device)])
            self.head.bias.copy_(source.head.bias[list(classes)])
        self.router: Optional[nn.Module] = None

    @property
    def cloned_blocks(self) -> int:
        return len(self.blocks)

    def copied_parameters(self) -> int:
        """Parameters copied from the source (the pruned blocks)."""
        return count_parameters(self.blocks)

    def trainable_parameters(self) -> int:
        return count_parameters(self.adapter) + count_parameters(self.head)

    def train(self, mode: bool = True):
        super().train(mode)
        self.blocks.eval()  # the cloned source blocks keep the source's statistics
        self.pool.eval()
        return self

    def features(self, target_feature: torch.Tensor) -> torch.Tensor:
        """The pooled features the head reads."""
        h = self.adapter(target_feature)
        for block in self.blocks:
            h = block(h)
        return self.pool(h)

    def forward(self, target_feature: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(target_feature))


class ClonedNetwork(nn.Module):
    """The frozen target plus removable clone modules, one per step (keys are 1-based steps).

    ``routing``: ``none`` concatenates every head's raw logits (an ablation); otherwise the
    output for class c of step s is log p(s | x) + log_softmax(head_s(x))[c], with p(s | x)
    from the routers (``strategies.pnc.routers.route``); a class several steps know gets the
    log of the sum over them (``place_scores``).
    """

    def __init__(self, target: nn.Module, base_classes: Sequence[int], routing: str,
                 router_space: str, router_pool: int = 7):
        super().__init__()
        self.target = target.eval()
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.register_buffer("base_classes", torch.tensor(list(base_classes), dtype=torch.int64))
        self.clones = nn.ModuleDict()
        self.routing = routing
        self.router_space = router_space
        self.router_pool = router_pool
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
        """Deletes the module (and router) of ``step`` (1-based); the others keep working."""
        if str(step) not in self.clones:
            raise KeyError(f"no cloned module for step {step}; present: {self.steps}")
        del self.clones[str(step)]

    def router_features(self, x: torch.Tensor, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The routing space shared by all steps: the input (images pooled to
        ``router_pool`` squared per channel), the frozen target's embedding, or both."""
        parts = []
        if "input" in self.router_space:
            parts.append(router_input(x, self.router_pool))
        if "target" in self.router_space:
            parts.append(self.target.pool(feats[-1]).flatten(1))
        return torch.cat(parts, dim=1)

    def step_logits(self, x: torch.Tensor):
        """(boundary features, each step's logits over its own classes, their classes)."""
        feats = boundary_features(self.target, x)
        base = self.target.head(self.target.pool(feats[-1]))[:, self.base_classes]
        logits = [base] + [m(feats[m.position]) for m in self.clones.values()]
        classes = [self.base_classes] + [m.classes for m in self.clones.values()]
        return feats, logits, classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self.clones):
            return self.target(x)
        feats, logits, classes = self.step_logits(x)
        out = torch.full((len(x), self.target.num_classes), float("-inf"), device=x.device,
                         dtype=logits[0].dtype)
        if self.routing == "none":
            return place_scores(out, classes, logits)
        log_step = route(self, x, feats)
        return place_scores(out, classes, [log_step[:, s:s + 1] + torch.log_softmax(z, dim=1)
                                           for s, z in enumerate(logits)])
