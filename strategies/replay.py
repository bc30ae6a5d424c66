"""``replay``: experience replay with a class-balanced buffer, from Avalanche's ``ReplayPlugin``
and ``ClassBalancedBuffer``.

Keeps: training samples in their stored form (uint8 images stay uint8) and their labels, as
many as fit in ``memory_bytes``, split equally over the classes seen so far; each class's share
is chosen by reservoir sampling (Avalanche's ``ClassBalancedBuffer``, adaptive size). Nothing
else: ``state_bytes`` is the buffer's inputs and labels.

Trains: every mini-batch of the step's data is joined by ``batch_size_mem`` samples of the
buffer, drawn in shuffled passes over it (Avalanche's ``ReplayDataLoader``); cross-entropy over
all outputs. The buffer is updated after each experience (``ReplayPlugin.after_training_exp``).

Built from Avalanche: ``ReplayPlugin`` (when the buffer is updated and that batches mix data
and memory) and ``ClassBalancedBuffer`` (which samples stay). Adapted for the fast template
(``strategies.memory``): the buffer is fed the experience's stored tensors and compacted, its
reservoir draws come from the strategy's seed, and memory batches are drawn by index from the
buffer's tensors on the device (``MemoryBatches``, ``ReplayBatches``) instead of a
``ReplayDataLoader`` that collates samples one by one. Experiences that are not
``TensorExperience``s go through Avalanche's ``ReplayDataLoader`` unchanged.

Defaults: ``batch_size_mem`` none = the training batch size, so half of each mini-batch is
replay (Avalanche's default; ER in Chaudhry et al. 2019, "On tiny episodic memories in continual
learning", replays one memory batch of the training batch's size per step).
"""
from __future__ import annotations

from avalanche.training.plugins import ReplayPlugin

from benchmark.core.options import Option
from benchmark.core.tensors import TensorExperience
from strategies.memory import (
    FALLBACK_SAMPLES,
    ClassBalancedTemplate,
    MemoryBatches,
    ReplayBatches,
    StoredClassBalancedBuffer,
)
from strategies.registry import ALL_SCENARIOS, register_strategy


class FastReplayPlugin(ReplayPlugin):
    """``ReplayPlugin`` whose mixed batches come from the buffer's tensors (``ReplayBatches``)
    when the experience is a ``TensorExperience``."""

    def before_training_exp(self, strategy, num_workers: int = 0, shuffle: bool = True,
                            drop_last: bool = False, **kwargs):
        exp = strategy.experience
        if not isinstance(exp, TensorExperience):
            super().before_training_exp(strategy, num_workers, shuffle, drop_last, **kwargs)
            return
        x, y = self.storage_policy.tensors()
        if len(y) == 0:
            return
        memory = MemoryBatches(x.to(strategy.device), y.to(strategy.device),
                               self.batch_size_mem or strategy.train_mb_size,
                               strategy.generator, decode=exp.decode, augment=exp.augment)
        strategy.dataloader = ReplayBatches(strategy.dataloader, memory)

    def after_training_exp(self, strategy, **kwargs):
        """The buffer's update, through ``post_adapt`` (``update`` is deprecated in
        Avalanche)."""
        self.storage_policy.post_adapt(strategy, strategy.experience)


@register_strategy("replay", summary="experience replay, class-balanced buffer in bytes "
                   "(Avalanche ReplayPlugin + ClassBalancedBuffer)", family="replay",
                   keeps_samples=True)
class Replay(ClassBalancedTemplate):
    """Finetuning on each mini-batch joined by a batch of the class-balanced buffer."""

    SCENARIOS = ALL_SCENARIOS
    BUFFER_PLUGIN = FastReplayPlugin

    OPTIONS = ClassBalancedTemplate.OPTIONS + (
        Option("batch_size_mem", int, None,
               "buffer samples added to each mini-batch; none: the training batch size", low=1),
    )

    def own_plugins(self):
        return [FastReplayPlugin(mem_size=FALLBACK_SAMPLES,
                                 batch_size_mem=self.hp["batch_size_mem"],
                                 storage_policy=StoredClassBalancedBuffer(FALLBACK_SAMPLES))]
