"""What a stream is: class-incremental experiences as tensors, plus a registry of stream builders.

A stream is a sequence of experiences e_1..e_T with disjoint class sets. Each experience has a
train and a test split, held as tensors (``x`` float, ``y`` int64 with the dataset's original
labels). The class order is a permutation decided by the seed; the train/test split itself is
fixed by the dataset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from benchmark.errors import UsageError


@dataclass
class StreamData:
    """A built stream: per-step tensors and what a run needs to know about them."""

    name: str
    seed: int
    num_classes: int
    input_shape: Tuple[int, ...]
    backbone: str
    classes_per_step: List[List[int]]
    train: List[Tuple[torch.Tensor, torch.Tensor]]
    test: List[Tuple[torch.Tensor, torch.Tensor]]
    options: Dict[str, Any] = field(default_factory=dict)
    augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None

    @property
    def n_steps(self) -> int:
        return len(self.classes_per_step)

    def to(self, device: torch.device, max_fraction: float = 0.5) -> "StreamData":
        """Places the stream's tensors for training on ``device`` (SPEC 7 fast path).

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

    def train_experiences(self) -> list:
        from benchmark.data import TensorExperience

        return [
            TensorExperience(x, y, classes, step, augment=self.augment)
            for step, ((x, y), classes) in enumerate(zip(self.train, self.classes_per_step))
        ]

    def test_experiences(self) -> list:
        from benchmark.data import TensorExperience

        return [
            TensorExperience(x, y, classes, step)
            for step, ((x, y), classes) in enumerate(zip(self.test, self.classes_per_step))
        ]


@dataclass(frozen=True)
class StreamOption:
    """A typed stream option with its default and meaning."""

    name: str
    type: type
    default: Any
    help: str


@dataclass(frozen=True)
class StreamSpec:
    """A registered stream: its builder, default backbone and default training settings."""

    name: str
    build: Callable[..., StreamData]  # build(seed=, data_root=, download=, **options)
    summary: str
    backbone: str
    train_defaults: Dict[str, Any]
    options: Tuple[StreamOption, ...] = ()
    needs_data_root: bool = False
    num_classes: Optional[int] = None  # when known, the split is checked before any run starts
    input_shape: Optional[Tuple[int, ...]] = None  # when known, the backbone is checked too


STREAMS: Dict[str, StreamSpec] = {}


def register_stream(spec: StreamSpec) -> StreamSpec:
    """Adds a stream to the registry (one call per stream file)."""
    if spec.name in STREAMS:
        raise ValueError(f"stream {spec.name!r} registered twice")
    STREAMS[spec.name] = spec
    return spec


def get_stream(name: str) -> StreamSpec:
    if name not in STREAMS:
        raise UsageError(
            f"unknown stream {name!r}; choose one of: {', '.join(sorted(STREAMS))} "
            "(`clonebench list` shows them)"
        )
    return STREAMS[name]


def resolve_stream_options(spec: StreamSpec, given: Dict[str, Any]) -> Dict[str, Any]:
    """Fills in defaults and checks names and types of stream options."""
    known = {o.name: o for o in spec.options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UsageError(
            f"unknown option {unknown[0]!r} for stream {spec.name!r}; "
            f"known: {', '.join(known) or 'none'}"
        )
    resolved = {}
    for name, opt in known.items():
        value = given.get(name, opt.default)
        if value is not None and opt.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise UsageError(
                    f"stream option {spec.name}.{name} must be an integer, got {value!r}"
                )
        resolved[name] = value
    if spec.num_classes is not None and "n_experiences" in resolved:
        split_classes(range(spec.num_classes), resolved["n_experiences"], resolved.get("first"))
    return resolved


def split_classes(
    order: Sequence[int], n_experiences: int, first: Optional[int] = None
) -> List[List[int]]:
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


def class_order(num_classes: int, seed: int) -> List[int]:
    """The seed's class order: a permutation of 0..num_classes-1 (NumPy's RandomState)."""
    return [int(c) for c in np.random.RandomState(seed).permutation(num_classes)]


def split_by_classes(
    x: torch.Tensor, y: torch.Tensor, classes_per_step: List[List[int]]
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """One (x, y) pair per experience, keeping the original sample order within each."""
    out = []
    for classes in classes_per_step:
        mask = torch.isin(y, torch.tensor(classes, dtype=y.dtype))
        out.append((x[mask].contiguous(), y[mask].contiguous()))
    return out
