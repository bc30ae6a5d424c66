"""What a stream is: experiences as tensors.

A stream is a sequence of experiences e_1..e_T. Each experience has a train and a test split,
held as tensors (``x`` in its stored form, ``y`` int64 with the data set's original labels) plus
``decode``, which turns stored inputs into model inputs batch by batch (see
``benchmark.core.tensors``). The class order is a permutation decided by the seed. A stream as
built is class-incremental (disjoint class sets); a scenario (``benchmark.scenarios``) may
rearrange it: the same classes under new domains, known classes coming back, or a pre-trained
target and a model zoo of sources (``pretrain``, ``sources``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from benchmark.core.errors import UsageError
from benchmark.core.tensors import TensorExperience, decoded


@dataclass
class StreamData:
    """A built stream: per-step tensors and what a run needs to know about them."""

    name: str
    seed: int
    num_classes: int
    input_shape: tuple[int, ...]
    backbone: str
    classes_per_step: list[list[int]]
    train: list[tuple[torch.Tensor, torch.Tensor]]
    test: list[tuple[torch.Tensor, torch.Tensor]]
    options: dict[str, Any] = field(default_factory=dict)
    augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None
    decode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    # (C, H, W) of an input seen as an image when ``input_shape`` is flat (split-digits' 64
    # pixels are 1 x 8 x 8); None: ``input_shape`` itself
    image_shape: Optional[tuple[int, ...]] = None
    # what a scenario adds (benchmark.scenarios): its name; the classes of each step's
    # *training* data when they differ from ``classes_per_step`` (the classes of its test set);
    # the training data a pre-trained target learnt (never handed to a strategy); per step, the
    # classes and training data of the step's pre-trained source (None where the step has none)
    scenario: str = "class-incremental"
    train_classes: Optional[list[list[int]]] = None
    pretrain: Optional[tuple[torch.Tensor, torch.Tensor]] = None
    sources: Optional[list[Optional[tuple[list[int], torch.Tensor, torch.Tensor]]]] = None

    @property
    def n_steps(self) -> int:
        return len(self.classes_per_step)

    @property
    def sample_bytes(self) -> int:
        """Bytes of one stored training sample: its input at the stored dtype plus its label."""
        x, y = next((pair for pair in self.train if len(pair[1])), self.train[0])
        per_input = x[0].numel() * x.element_size() if len(x) else 0
        return per_input + y.element_size()

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Stored inputs ``x`` of this stream as model inputs (``decode`` applied in batches)."""
        return decoded(x, self.decode)

    def to(self, device: torch.device, max_fraction: float = 0.5) -> StreamData:
        """Places the stream's tensors for training on ``device`` (the fast path).

        Test sets always move to ``device``. Train sets move too when the whole stream takes at
        most ``max_fraction`` of the GPU's free memory (always, for a CPU device); otherwise
        they stay in host memory and each experience is copied to the device when it is trained
        on (``FastTemplate`` and the expert ``fit`` call ``.to(device)`` on its tensors), so
        only one experience's training data is on the GPU at a time.
        """
        device = torch.device(device)
        keep_train_on_host = False
        if device.type == "cuda":
            pairs = self.train + self.test
            need = sum(t.element_size() * t.nelement() for pair in pairs for t in pair)
            free, _ = torch.cuda.mem_get_info(device if device.index is not None else None)
            keep_train_on_host = need > max_fraction * free
        if not keep_train_on_host:
            self.train = [(x.to(device), y.to(device)) for x, y in self.train]
        self.test = [(x.to(device), y.to(device)) for x, y in self.test]
        return self

    @property
    def training_classes(self) -> list[list[int]]:
        """The classes of each step's training data."""
        return self.train_classes if self.train_classes is not None else self.classes_per_step

    @property
    def picture_shape(self) -> Optional[tuple[int, ...]]:
        """(C, H, W) of one input seen as an image, or None when it is not one."""
        if self.image_shape is not None:
            return tuple(self.image_shape)
        return tuple(self.input_shape) if len(self.input_shape) == 3 else None

    def train_experiences(self) -> list[TensorExperience]:
        """The training experiences; with a pre-trained target (``pretrain``), the first is
        marked ``pretrained``: strategies start from that target and train nothing on it (its
        data, if any, is what they may keep of the target's classes)."""
        experiences = [TensorExperience(x, y, classes, step, augment=self.augment,
                                        decode=self.decode)
                       for step, ((x, y), classes) in enumerate(zip(self.train,
                                                                    self.training_classes))]
        if self.pretrain is not None:
            experiences[0].pretrained = True
        return experiences

    def test_experiences(self) -> list[TensorExperience]:
        return [TensorExperience(x, y, classes, step, decode=self.decode)
                for step, ((x, y), classes) in enumerate(zip(self.test, self.classes_per_step))]


def split_classes(
    order: Sequence[int], n_experiences: int, first: Optional[int] = None
) -> list[list[int]]:
    """Splits a class order into experiences.

    ``first`` (optional) is the number of classes of the first experience; the remaining classes
    are split into ``n_experiences - 1`` (with ``first``) or ``n_experiences`` (without) equal
    experiences. An uneven split is refused rather than silently dropping classes.
    """
    order = list(order)
    n = len(order)
    if n_experiences < 1:
        raise UsageError(f"impossible split: n_experiences must be >= 1, got {n_experiences}")
    if first is not None:
        if not 0 < first < n:
            raise UsageError(f"impossible split: first={first} must be between 1 and {n - 1}")
        rest = n - first
        if n_experiences < 2 or rest % (n_experiences - 1):
            raise UsageError(
                f"impossible split: {rest} remaining classes do not divide into "
                f"{n_experiences - 1} equal experiences; change n_experiences or first"
            )
        size = rest // (n_experiences - 1)
        return [order[:first]] + [
            order[first + i * size: first + (i + 1) * size] for i in range(n_experiences - 1)
        ]
    if n_experiences > n or n % n_experiences:
        raise UsageError(
            f"impossible split: {n} classes do not divide into {n_experiences} equal "
            "experiences; choose n_experiences among the divisors of the class count"
        )
    size = n // n_experiences
    return [order[i * size:(i + 1) * size] for i in range(n_experiences)]


def class_order(num_classes: int, seed: int) -> list[int]:
    """The seed's class order: a permutation of 0..num_classes-1 (NumPy's RandomState)."""
    return [int(c) for c in np.random.RandomState(seed).permutation(num_classes)]


def split_by_classes(
    x: torch.Tensor, y: torch.Tensor, classes_per_step: list[list[int]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One (x, y) pair per experience, keeping the original sample order within each."""
    out = []
    for classes in classes_per_step:
        mask = torch.isin(y, torch.tensor(classes, dtype=y.dtype))
        out.append((x[mask].contiguous(), y[mask].contiguous()))
    return out


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held_out): sorted indices into ``labels`` splitting each class apart.

    For each class c with n_c samples, h_c = floor(fraction * n_c + 1/2) of them are held out,
    at least 1 and at most n_c - 1 (none when n_c = 1), drawn uniformly at random by NumPy's
    ``default_rng([seed, c])``; so a class's draw depends only on the seed, the class and its
    samples, not on the other classes. UsageError unless 0 < fraction < 1.
    """
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"bad held-out fraction {fraction!r}: expected a number in (0, 1)")
    labels = np.asarray(labels)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n = len(members)
        count = min(max(int(np.floor(fraction * n + 0.5)), 1), n - 1)
        order = np.random.default_rng([int(seed), int(c)]).permutation(n)
        held.append(members[order[:count]])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out


def validation_split(data: StreamData, fraction: float, seed: int) -> StreamData:
    """The stream with each experience's test set replaced by a validation set carved from its
    *training* data: per experience, ``stratified_holdout(y_train, fraction, seed)`` gives the
    held-out samples (the new ``test``) and the rest (the new ``train``), in their original
    order. The original test tensors are never read; everything else (classes, order, decode,
    augmentation) is kept."""
    train, held = [], []
    for x, y in data.train:
        kept, held_out = stratified_holdout(y.cpu().numpy(), fraction, seed)
        kept_t = torch.as_tensor(kept, dtype=torch.int64, device=y.device)
        held_t = torch.as_tensor(held_out, dtype=torch.int64, device=y.device)
        train.append((x[kept_t.to(x.device)], y[kept_t]))
        held.append((x[held_t.to(x.device)], y[held_t]))
    return dataclasses.replace(data, train=train, test=held)
