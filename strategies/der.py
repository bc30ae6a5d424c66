"""``der``: Dark Experience Replay++ (Buzzega et al. 2020), Avalanche's ``DER`` strategy.

Keeps: training samples in their stored form and their labels, each with the logits the model
gave it (float32, one per output) at the end of the step it was seen in, as many as fit in
``memory_bytes`` (logits included), split equally over the classes seen so far by reservoir
sampling (Avalanche's ``ClassBalancedBufferWithLogits``). No model copy. ``state_bytes`` is the
buffer's inputs, labels and logits.

Trains: each mini-batch of the step's data is preceded by ``batch_size_mem`` buffer samples;
loss = cross-entropy on the new samples + ``alpha`` * MSE between the buffer samples' outputs and
their stored logits + ``beta`` * cross-entropy on the buffer samples (``beta`` > 0 is DER++,
``beta`` = 0 plain DER). This is Avalanche's ``DER.training_epoch`` itself.

Built from Avalanche: the strategy subclasses Avalanche's ``DER`` (its loss, its training
epoch, its ``_before_forward`` that joins a buffer batch to each mini-batch, its buffer update
after each experience) and its ``ClassBalancedBufferWithLogits``. Adapted for the fast template:
the buffer is fed the experience's stored tensors (logits computed on the decoded inputs) and
compacted, its reservoir draws come from the strategy's seed, and the buffer batches are drawn
by index from the buffer's tensors (``MemoryBatches``) instead of a ``DataLoader`` that
collates samples one by one. The loss of every iteration is kept in ``loss_curve``.

Defaults: ``alpha`` = 0.1 and ``beta`` = 0.5, Avalanche's defaults, in the range Buzzega et al.
report as best for small buffers on sequential MNIST and CIFAR-10 (alpha 0.1-0.3, beta 0.5-1);
``batch_size_mem`` none = the training batch size (Avalanche's default; the paper draws buffer
batches of the training batch's size).
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
from avalanche.training import DER as AvalancheDER
from avalanche.training.supervised.der import ClassBalancedBufferWithLogits

from benchmark.core.options import Option
from benchmark.core.tensors import TensorExperience, stored_tensors
from strategies.base import tensor_bytes
from strategies.memory import (
    FALLBACK_SAMPLES,
    BufferTemplate,
    DecodedInput,
    MemoryBatches,
    compact,
    output_width,
    rng_from,
    stored_dataset,
    stored_dataset_with_logits,
)
from strategies.registry import ALL_SCENARIOS, register_strategy


class StoredLogitsBuffer(ClassBalancedBufferWithLogits):
    """Avalanche's ``ClassBalancedBufferWithLogits`` fed the experience's stored tensors (the
    model sees them decoded), its draws seeded by the strategy, compacted after each update."""

    kept: list[torch.Tensor] = []

    def update(self, strategy, **kwargs):
        x, y, decode = stored_tensors(strategy.experience)
        if not len(y):  # an experience without data (a pre-trained target's) adds nothing
            return
        view = SimpleNamespace(experience=SimpleNamespace(dataset=stored_dataset(x, y)),
                               model=DecodedInput(strategy.model, decode),
                               train_mb_size=strategy.train_mb_size, device=strategy.device)
        with rng_from(strategy.generator):
            super().update(view, **kwargs)
        self.kept = compact(self, stored_dataset_with_logits)

    def fields(self) -> list[torch.Tensor]:
        """(stored x, y, task labels, logits) of every sample kept ([] when empty)."""
        return self.kept


@register_strategy("der", summary="Dark Experience Replay++: buffer of samples and their "
                   "logits in bytes (Avalanche DER, alpha, beta)", family="replay",
                   keeps_samples=True)
class DER(BufferTemplate, AvalancheDER):
    """Avalanche's DER++ on tensor experiences, its buffer under a byte budget."""

    SCENARIOS = ALL_SCENARIOS

    OPTIONS = BufferTemplate.OPTIONS + (
        Option("alpha", float, 0.5, "weight of the MSE between buffer outputs and stored logits",
               low=0.0),
        Option("beta", float, 0.5, "weight of the cross-entropy on buffer samples (0: DER)",
               low=0.0),
        Option("batch_size_mem", int, None,
               "buffer samples per mini-batch; none: the training batch size", low=1),
    )

    training_epoch = AvalancheDER.training_epoch

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.alpha, self.beta = self.hp["alpha"], self.hp["beta"]
        self.batch_size_mem = self.hp["batch_size_mem"] or self.train_mb_size
        self.mem_size = FALLBACK_SAMPLES
        self.storage_policy = StoredLogitsBuffer(self.mem_size, adaptive_size=True)

    def per_sample_bytes(self) -> int:
        """A sample's stored input and label, and its logits (one per output, at the model's
        output dtype)."""
        outputs, size = output_width(self.model, self.experience, self.device)
        return super().per_sample_bytes() + outputs * size

    def _before_training_exp(self, **kwargs):
        """Sizes the buffer, then lets DER decide whether to replay and draws its buffer batches
        from tensors."""
        self.mem_size = self.storage_policy.max_size = self.sample_capacity()
        super()._before_training_exp(**kwargs)
        if self.replay_loader is not None and isinstance(self.experience, TensorExperience):
            bx, by, _, logits = self.storage_policy.fields()
            self.replay_loader = iter(MemoryBatches(
                bx.to(self.device), by.to(self.device), self.batch_size_mem, self.generator,
                decode=self.experience.decode, augment=self.experience.augment,
                extra=[logits.to(self.device)]))

    def _after_training_iteration(self, **kwargs):
        self._add_batch_loss()
        super()._after_training_iteration(**kwargs)

    def kept_samples(self):
        fields = self.storage_policy.fields()
        return (fields[0], fields[1]) if fields else (torch.zeros(0), torch.zeros(0).long())

    def state_bytes(self) -> int:
        """The buffer's stored inputs, labels and logits."""
        fields = self.storage_policy.fields()
        return tensor_bytes([fields[0], fields[1], fields[3]]) if fields else 0
