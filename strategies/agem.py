"""``agem``: Averaged Gradient Episodic Memory (Chaudhry et al. 2019), Avalanche's
``AGEMPlugin``.

Keeps: an episodic memory of training samples in their stored form and their labels, an equal
share of ``memory_bytes`` per experience seen: after step k every experience keeps
floor(capacity / k) samples, drawn at random from it when it was trained on (older experiences
drop the end of their random selection to make room). ``state_bytes`` is the memory's inputs
and labels.

Trains: finetuning whose every update is projected: before each iteration the gradient of the
loss on a batch of the memory (``sample_size`` samples, balanced over the experiences) is the
reference g_ref; if the mini-batch's gradient g has g . g_ref < 0, it is replaced by
g - (g . g_ref / g_ref . g_ref) g_ref. The reference gradient is a per-iteration quantity,
released after each step.

Built from Avalanche: ``AGEMPlugin`` (its reference gradient in ``before_training_iteration``,
its projection in ``after_backward``). Adapted for the fast template and the byte budget: the
memory is one pair of stored tensors per experience (Avalanche keeps datasets), and its update
(``after_training_exp``) adds the step's stored tensors, with a per-experience share that
shrinks as experiences arrive so the total stays within the budget (Avalanche's
``patterns_per_experience`` is fixed, so its memory grows with every experience), draws from the
strategy's generator (Avalanche uses Python's global ``random``), and memory batches are drawn
by index from the tensors (``sample_from_memory``) instead of a ``GroupBalancedInfiniteDataLoader``
that collates samples one by one.

Defaults: ``sample_size`` = 256, the memory batch of the A-GEM paper (Avalanche's default is
64); a memory smaller than that is used whole.
"""
from __future__ import annotations

import torch
from avalanche.training.plugins import AGEMPlugin

from benchmark.core.options import Option
from benchmark.core.tensors import stored_tensors
from strategies.base import tensor_bytes
from strategies.memory import (
    BufferTemplate,
    MemoryBatches,
)
from strategies.registry import ALL_SCENARIOS, register_strategy


def standard_copy(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy of ``t`` with row-major strides. A dimension of size 1 (one image channel)
    leaves a tensor's strides ambiguous, and convolutions choose their kernel, hence their
    rounding, by them; the memory's samples keep this layout, the one they had when the memory
    was stacked from Avalanche datasets."""
    return t.cpu().clone(memory_format=torch.contiguous_format)


class FastAGEMPlugin(AGEMPlugin):
    """``AGEMPlugin`` with a stored memory under a sample capacity, sampled from tensors.

    ``buffers`` holds one (stored x, y) pair of CPU tensors per experience (Avalanche's holds
    one dataset per experience; its hooks only ask whether there are any)."""

    def __init__(self, sample_size: int):
        super().__init__(patterns_per_experience=0, sample_size=sample_size)
        self.buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.capacity = 0
        self._draw = None

    def before_training_exp(self, strategy, **kwargs):
        """Prepares this step's memory batches: ``sample_size // experiences`` samples of each
        experience's memory (at most all of it), decoded and augmented like training data."""
        if not self.buffers:
            return
        exp = strategy.experience
        per_group = max(1, self.sample_size // len(self.buffers))
        groups = [MemoryBatches(x.to(strategy.device), y.to(strategy.device), per_group,
                                strategy.generator, decode=getattr(exp, "decode", None),
                                augment=getattr(exp, "augment", None))
                  for x, y in self.buffers]

        def draw():
            return [torch.cat(parts) for parts in zip(*(g.next() for g in groups))]

        self._draw = draw

    def sample_from_memory(self):
        return self._draw()

    def after_training_exp(self, strategy, **kwargs):
        """Adds the step's share of the memory and trims the older experiences' shares."""
        x, y, _ = stored_tensors(strategy.experience)
        self.patterns_per_experience = self.capacity // (len(self.buffers) + 1)
        keep = self.patterns_per_experience
        self.buffers = [(bx, by) if len(by) <= keep else
                        (standard_copy(bx[:keep]), standard_copy(by[:keep]))
                        for bx, by in self.buffers]
        pick = torch.randperm(len(y), generator=strategy.generator)[:keep].to(y.device)
        self.buffers.append((standard_copy(x[pick]), standard_copy(y[pick])))
        self.buffers = [(bx, by) for bx, by in self.buffers if len(by) > 0]
        self._draw = None
        self.reference_gradients = torch.empty(0)

    def kept(self) -> list[torch.Tensor]:
        """Stored inputs and labels of every experience's memory."""
        return [t for pair in self.buffers for t in pair]


@register_strategy("agem", summary="A-GEM: gradients projected against a memory batch's, "
                   "memory in bytes (Avalanche AGEMPlugin)", family="replay",
                   keeps_samples=True)
class AGEM(BufferTemplate):
    """Finetuning with gradients projected so the loss on the memory does not increase."""

    SCENARIOS = ALL_SCENARIOS

    OPTIONS = BufferTemplate.OPTIONS + (
        Option("sample_size", int, 256, "memory samples of each reference gradient", low=1),
    )

    def own_plugins(self):
        return [FastAGEMPlugin(self.hp["sample_size"])]

    @property
    def agem(self) -> FastAGEMPlugin:
        return next(p for p in self.plugins if isinstance(p, FastAGEMPlugin))

    def _before_training_exp(self, **kwargs):
        """Sizes the memory: the most stored samples (input and label) that fit the budget."""
        self.agem.capacity = self.sample_capacity()
        super()._before_training_exp(**kwargs)

    def kept_samples(self):
        kept = self.agem.kept()
        if not kept:
            return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
        return torch.cat(kept[0::2]), torch.cat(kept[1::2])

    def state_bytes(self) -> int:
        """The memory's stored inputs and labels."""
        return tensor_bytes(self.agem.kept())
