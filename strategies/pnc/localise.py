"""Localisation: which channels of the source serve a step's classes.

``ChannelGates`` holds one learnable logit per channel of every source block; sigmoid(logit) is
the gate. Trained (by a PNC phase) to keep the source's own predictions on the step's classes
(KL distillation at a temperature) under an L1 penalty on the gate values, the source's weights
untouched; ``binarise`` turns the gates into hard masks.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from strategies.pnc.network import channel_view


class ChannelGates(nn.Module):
    """Learnable channel gates on the output of every block of a (frozen) source network."""

    def __init__(self, source: nn.Module, classes: Sequence[int], temperature: float,
                 sparsity: float, initial_logit: float = 3.0):
        super().__init__()
        self.source = [source]  # not a submodule: its weights are never trained nor saved here
        device = next(source.parameters()).device
        self.logits = nn.ParameterList(
            [nn.Parameter(torch.full((w,), initial_logit, device=device))
             for w in source.widths[1:]])
        self.register_buffer("classes", torch.tensor(list(classes), device=device))
        self.temperature = temperature
        self.sparsity = sparsity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The gated source's logits over the step's classes; the ungated source's are kept
        for ``loss``."""
        source = self.source[0]
        with torch.no_grad():
            self._teacher = source(x)[:, self.classes]
        h = source.stem(x)
        for block, g in zip(source.blocks, self.logits):
            h = block(h)
            h = h * channel_view(torch.sigmoid(g), h)
        return source.head(source.pool(h))[:, self.classes]

    def loss(self, student: torch.Tensor, _labels=None) -> torch.Tensor:
        """temperature^2 KL(source || gated source) + sparsity x mean gate value, on the batch
        of the last ``forward``."""
        t = self.temperature
        teacher = torch.log_softmax(self._teacher / t, dim=1)
        kl = F.kl_div(torch.log_softmax(student / t, dim=1), teacher, log_target=True,
                      reduction="batchmean")
        l1 = torch.cat([torch.sigmoid(g) for g in self.logits]).mean()
        return kl * t ** 2 + self.sparsity * l1

    def values(self) -> list[torch.Tensor]:
        return [torch.sigmoid(g).detach() for g in self.logits]


def binarise(gates: Sequence[torch.Tensor], threshold: float) -> list[torch.Tensor]:
    """Hard masks from gate values; the strongest channel of a block is kept if none passes."""
    masks = []
    for g in gates:
        m = g > threshold
        if not bool(m.any()):
            m = torch.zeros_like(m)
            m[g.argmax()] = True
        masks.append(m)
    return masks
