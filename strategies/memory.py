"""What the strategies that keep samples share: the byte budget, Avalanche datasets over stored
tensors, compact Avalanche buffers, and replay batches drawn from tensors.

**Budget.** Every buffer strategy (``replay``, ``icarl``, ``der``, ``gdumb``, ``agem``) declares
``memory_bytes`` (``MEMORY_BYTES``): the most bytes it may keep between steps. ``None`` takes
the stream's default budget (``StrategyContext.memory_bytes``); where there is none either (a
strategy built in one's own Avalanche code, or a stream without a default), the budget is
Avalanche's own default buffer of ``FALLBACK_SAMPLES`` samples, in bytes. A strategy keeps the
largest number of samples whose bytes fit (``BufferTemplate.sample_capacity``, computed once),
and its ``state_bytes()`` measures what it really keeps, which a test holds to at most the
budget.

**Stored form.** Samples are kept as the stream stores them (``stored_tensors``: uint8 images
stay uint8) and decoded batch by batch when trained on. An Avalanche buffer (e.g.
``ClassBalancedBuffer``) is fed ``stored_dataset`` (a classification dataset over the stored
tensors) and then ``compact``-ed: each group's dataset is rebuilt from its own samples, so the
buffer refers to nothing but what it keeps (an Avalanche subset would keep the whole
experience's tensors alive). Replay and GDumb keep theirs in their plugin's
``StoredClassBalancedBuffer`` (``ClassBalancedTemplate``).

**Speed.** Avalanche's ``ReplayDataLoader`` and DER's buffer loader collate samples one by one;
here the buffer's samples are stacked once per step (``dataset_tensors``) and replay batches are
drawn by index (``IndexCycler``, ``MemoryBatches``, ``ReplayBatches``) on the device, as
``TensorLoader`` does.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Optional

import torch
from avalanche.benchmarks.utils import make_avalanche_dataset
from avalanche.benchmarks.utils.classification_dataset import (
    _make_taskaware_tensor_classification_dataset,
)
from avalanche.benchmarks.utils.data_attribute import TensorDataAttribute
from avalanche.benchmarks.utils.flat_data import FlatData
from avalanche.training.plugins import SupervisedPlugin
from avalanche.training.storage_policy import ClassBalancedBuffer
from torch import nn

from benchmark.core.options import Option
from benchmark.core.tensors import TensorExperience, decoded, stored_tensors
from strategies.base import FastTemplate, tensor_bytes

FALLBACK_SAMPLES = 200

MEMORY_BYTES = Option(
    "memory_bytes", int, None,
    "bytes kept between steps (samples at their stored dtype, labels, logits, per-sample "
    "bookkeeping); none: the stream's default budget", low=1)


def sample_bytes(x: torch.Tensor, y: torch.Tensor, extra: int = 0) -> int:
    """Bytes of one stored sample of ``x``/``y`` (input at its dtype, label at its dtype), plus
    ``extra`` bytes kept with each sample (e.g. DER's logits)."""
    return math.prod(x.shape[1:]) * x.element_size() + y.element_size() + extra


def budget_bytes(memory_bytes: Optional[int], default_bytes: Optional[int],
                 per_sample: int) -> int:
    """The budget in bytes: the option, else the stream's default, else ``FALLBACK_SAMPLES``
    samples of ``per_sample`` bytes."""
    if memory_bytes is not None:
        return memory_bytes
    if default_bytes is not None:
        return default_bytes
    return FALLBACK_SAMPLES * per_sample


def samples_that_fit(budget: int, per_sample: int) -> int:
    """The largest number of samples of ``per_sample`` bytes that fit in ``budget`` bytes."""
    return max(0, budget // per_sample)


def stored_dataset(x: torch.Tensor, y: torch.Tensor):
    """An Avalanche classification dataset (task label 0) over stored inputs and labels, on
    the CPU."""
    x, y = x.cpu(), y.cpu()
    return _make_taskaware_tensor_classification_dataset(x, y, task_labels=0, targets=y)


def stored_dataset_with_logits(fields: list[torch.Tensor]):
    """``stored_dataset`` of (x, y, task labels, logits) carrying the logits as an attribute
    returned by ``__getitem__``, as Avalanche's DER buffer holds them."""
    x, y, _, logits = fields
    attribute = TensorDataAttribute(FlatData([list(logits)], discard_elements_not_in_indices=True),
                                    name="logits", use_in_getitem=True)
    return make_avalanche_dataset(stored_dataset(x, y), data_attributes=[attribute])


class DecodedInput(nn.Module):
    """``model`` applied to stored inputs decoded by ``decode`` (None: taken as they are), for
    Avalanche code that runs a model on a buffer's stored samples."""

    def __init__(self, model: nn.Module, decode=None):
        super().__init__()
        self.model, self.decode = model, decode
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x if self.decode is None else self.decode(x))


@torch.no_grad()
def output_width(model: nn.Module, experience, device) -> tuple[int, int]:
    """(outputs, bytes per output) of ``model`` on the experience's first sample (eval mode)."""
    x, _, decode = stored_tensors(experience)
    was_training = model.training
    model.eval()
    out = model(decoded(x[:1].to(device), decode))
    model.train(was_training)
    return out.shape[1], out.element_size()


def dataset_tensors(dataset) -> list[torch.Tensor]:
    """The fields of every sample of an Avalanche dataset (x, y, task label, any extra
    attribute such as DER's logits), each stacked into one tensor."""
    if len(dataset) == 0:
        return []
    samples = [dataset[i] for i in range(len(dataset))]
    return [torch.stack([torch.as_tensor(s[f]) for s in samples])
            for f in range(len(samples[0]))]


def compact(buffer, rebuild: Optional[Callable[[list[torch.Tensor]], object]] = None
            ) -> list[torch.Tensor]:
    """Rebuilds every group of an Avalanche ``BalancedExemplarsBuffer`` from its own samples
    (``rebuild(fields)``; default: ``stored_dataset`` of x and y), in the same order, so the
    buffer holds exactly what it keeps. Returns the fields of all its samples stacked (groups in
    key order); the groups' datasets hold views of these tensors, so nothing is stored twice
    ([] when the buffer is empty)."""
    rebuild = rebuild or (lambda fields: stored_dataset(fields[0], fields[1]))
    keys = [k for k in sorted(buffer.buffer_groups) if len(buffer.buffer_groups[k].buffer)]
    parts = [dataset_tensors(buffer.buffer_groups[k].buffer) for k in keys]
    if not parts:
        return []
    fields = [torch.cat([p[f] for p in parts]) for f in range(len(parts[0]))]
    start = 0
    for key, part in zip(keys, parts):
        end = start + len(part[0])
        buffer.buffer_groups[key].buffer = rebuild([f[start:end] for f in fields])
        start = end
    return fields


class StoredClassBalancedBuffer(ClassBalancedBuffer):
    """Avalanche's ``ClassBalancedBuffer`` (the memory split equally over the classes seen so
    far, each class's share chosen by reservoir sampling) fed the experience's stored tensors,
    its random draws seeded by the strategy (``rng_from(strategy.generator)``), and compacted
    after each update."""

    kept: list[torch.Tensor] = []

    def post_adapt(self, agent, exp):
        x, y, _ = stored_tensors(exp)
        with rng_from(agent.generator):
            self.update_from_dataset(stored_dataset(x, y), agent)
        self.kept = compact(self)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(stored x, y) of every sample kept, classes in increasing order."""
        if not self.kept:
            return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
        return self.kept[0], self.kept[1]

    def kept_bytes(self) -> int:
        """Bytes of the samples kept: inputs at their stored dtype and labels."""
        return tensor_bytes(self.tensors())


@contextmanager
def rng_from(generator: torch.Generator):
    """Runs the block with torch's global CPU generator seeded from ``generator`` and restores
    it afterwards, so Avalanche code that draws from the global generator (reservoir sampling)
    is deterministic per strategy and leaves the caller's random state alone."""
    seed = int(torch.randint(2 ** 62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class IndexCycler:
    """Index batches of ``min(batch_size, n)`` drawn from successive random permutations of
    ``range(n)`` (a permutation's last partial batch is skipped), like a shuffled
    ``DataLoader`` with ``drop_last`` cycled forever."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator,
                 device: torch.device):
        self.n, self.batch_size = n, min(batch_size, n)
        self.generator, self.device = generator, device
        self._order = torch.zeros(0, dtype=torch.int64)
        self._pos = 0

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > len(self._order):
            self._order = torch.randperm(self.n, generator=self.generator)
            self._pos = 0
        idx = self._order[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx.to(self.device)


class MemoryBatches:
    """Batches of ``batch_size`` samples of a memory (``x`` stored, ``y``, optional ``extra``
    tensors such as logits, all on one device) drawn by ``IndexCycler``, decoded and augmented
    like training batches: ``next()`` gives ``[x, y, t, *extra]`` (task labels ``t`` zero);
    iterating never ends."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 generator: torch.Generator, decode=None, augment=None,
                 extra: Sequence[torch.Tensor] = ()):
        self.x, self.y, self.extra = x, y, list(extra)
        self.decode, self.augment, self.generator = decode, augment, generator
        self.cycler = IndexCycler(len(y), batch_size, generator, y.device)

    def next(self) -> list[torch.Tensor]:
        idx = self.cycler.next()
        xb = self.x[idx]
        if self.decode is not None:
            xb = self.decode(xb)
        if self.augment is not None:
            xb = self.augment(xb, self.generator)
        yb = self.y[idx]
        return [xb, yb, torch.zeros_like(yb), *(e[idx] for e in self.extra)]

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        while True:
            yield self.next()


class ReplayBatches:
    """Each mini-batch ``[x, y, t]`` of ``current`` (a ``TensorLoader`` of the step's data)
    followed by the next batch of ``memory``: Avalanche's ``ReplayDataLoader`` over tensors."""

    def __init__(self, current, memory: MemoryBatches):
        self.current, self.memory = current, memory

    def __len__(self) -> int:
        return len(self.current)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        for batch in self.current:
            extra = self.memory.next()
            yield [torch.cat([a, b]) for a, b in zip(batch, extra[:3])]


class BufferTemplate(FastTemplate):
    """A ``FastTemplate`` that keeps samples under a byte budget (``memory_bytes``).

    Subclasses size their buffer by ``sample_capacity()`` before each step (a sample's bytes
    are ``per_sample_bytes()``, which they extend with what they keep per sample), give
    ``kept_samples()`` and measure ``state_bytes()``; each step's record then carries
    ``memory_bytes`` (the budget) and ``buffer_samples``. A subclass whose steps train on
    other tensors than the experience's (the buffer, or the experience and the buffer) gives
    them as ``training_tensors()``.
    """

    OPTIONS = (MEMORY_BYTES,)
    default_memory_bytes: Optional[int] = None
    memory_budget: Optional[int] = None
    capacity: Optional[int] = None

    @classmethod
    def from_context(cls, model, ctx, **hparams):
        """As ``FastTemplate.from_context``; the stream's default budget comes from ``ctx``."""
        strategy = super().from_context(model, ctx, **hparams)
        strategy.default_memory_bytes = ctx.memory_bytes
        return strategy

    def per_sample_bytes(self) -> int:
        """Bytes kept per sample of the current experience (default: its stored input and
        label, ``sample_bytes``)."""
        x, y, _ = stored_tensors(self.experience)
        return sample_bytes(x, y)

    def sample_capacity(self) -> int:
        """The most samples the buffer may keep: as many of ``per_sample_bytes()`` as fit the
        budget (``budget_bytes``, ``samples_that_fit``). Both are fixed at the first call, on
        the first experience (when the stored sample size is known), and reused: every
        sample of a stream has the same size."""
        if self.capacity is None:
            per_sample = self.per_sample_bytes()
            self.memory_budget = budget_bytes(self.hp["memory_bytes"], self.default_memory_bytes,
                                              per_sample)
            self.capacity = samples_that_fit(self.memory_budget, per_sample)
        return self.capacity

    def training_tensors(self) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(stored x, y) a step on a ``TensorExperience`` trains on; None (default): the
        experience's own."""
        return None

    def make_train_dataloader(self, shuffle: bool = True, **kwargs):
        """Batches of ``training_tensors()``, decoded and augmented as the experience's
        samples; ``FastTemplate``'s otherwise."""
        exp = self.experience
        tensors = self.training_tensors() if isinstance(exp, TensorExperience) else None
        if tensors is None:
            super().make_train_dataloader(shuffle=shuffle, **kwargs)
            return
        x, y = tensors
        self.dataloader = self.tensor_loader(x.to(self.device), y.to(self.device), shuffle,
                                             decode=exp.decode, augment=exp.augment)

    def kept_samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(stored x, y) of every sample kept now."""
        raise NotImplementedError

    def buffer_samples(self) -> int:
        """Samples kept now."""
        return len(self.kept_samples()[1])

    def step_report(self):
        report = super().step_report()
        report.update(memory_bytes=self.memory_budget, buffer_samples=self.buffer_samples())
        return report


class ClassBalancedTemplate(BufferTemplate):
    """A ``BufferTemplate`` whose samples sit in the ``StoredClassBalancedBuffer`` of its plugin
    of class ``BUFFER_PLUGIN`` (an Avalanche plugin with ``mem_size`` and ``storage_policy``),
    sized to ``sample_capacity()`` before each step."""

    BUFFER_PLUGIN: type = SupervisedPlugin

    @property
    def buffer_plugin(self):
        return next(p for p in self.plugins if isinstance(p, self.BUFFER_PLUGIN))

    def _before_training_exp(self, **kwargs):
        """Sizes the buffer: the most stored samples (input and label) that fit the budget."""
        plugin = self.buffer_plugin
        plugin.mem_size = plugin.storage_policy.max_size = self.sample_capacity()
        super()._before_training_exp(**kwargs)

    def kept_samples(self):
        return self.buffer_plugin.storage_policy.tensors()

    def state_bytes(self) -> int:
        """The buffer's stored inputs and labels."""
        return self.buffer_plugin.storage_policy.kept_bytes()


# As for ``FastTemplate`` (see strategies.base): Avalanche wraps every template's __init__ in a
# check of its keyword arguments against its own class hierarchy, which would refuse the options
# a subclass declares on their way through; the subclasses' own wrappers check them.
for _template in (BufferTemplate, ClassBalancedTemplate):
    _template.__init__ = inspect.unwrap(_template.__init__)
