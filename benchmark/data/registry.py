"""The stream registry: a stream is added by writing one module that calls ``register_stream``
(and, inside the package, importing it in ``benchmark/data/__init__.py``; a user's own module is
loaded with ``--plugins``, see the README)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Optional

from benchmark.core.options import Option, Registry, resolve
from benchmark.data.base import StreamData, split_classes


@dataclass(frozen=True)
class StreamShape:
    """What a stream's files say about it, known before a run: its class count, the shape of
    one input, the default backbone for that shape and the default memory budget (bytes)."""

    num_classes: int
    input_shape: tuple[int, ...]
    backbone: str
    memory_bytes: Optional[int] = None


@dataclass(frozen=True)
class StreamSpec:
    """A registered stream: its builder, default backbone and default training settings.

    ``build(seed=, data_root=, download=, **options) -> StreamData``. ``num_classes`` and
    ``input_shape``, when known without reading data, let the plan check splits and backbones
    before any run starts; a stream whose class count and shape come from the user's files
    gives ``shape(**options) -> StreamShape`` instead (``for_options`` applies it).
    ``memory_bytes`` is the default budget of the strategies that keep samples (their
    ``memory_bytes`` option overrides it). ``needs_data_root``: the stream reads the data root;
    ``reads_files``: it reads files of any kind, so the grid builds it once before any run to
    catch bad files.
    """

    name: str
    build: Callable[..., StreamData]
    summary: str
    backbone: str
    train_defaults: dict[str, Any]
    options: tuple[Option, ...] = ()
    needs_data_root: bool = False
    num_classes: Optional[int] = None
    input_shape: Optional[tuple[int, ...]] = None
    memory_bytes: Optional[int] = None
    shape: Optional[Callable[..., StreamShape]] = None
    version: int = 1  # raised when the same options give different data (keys change too)
    image_shape: Optional[tuple[int, ...]] = None  # flat inputs seen as (C, H, W) images

    @property
    def reads_files(self) -> bool:
        return self.needs_data_root or self.shape is not None

    def for_options(self, options: dict[str, Any]) -> StreamSpec:
        """The spec with the class count, input shape and default backbone that ``options``
        give (itself when they do not depend on the options); UsageError if the files they
        name are missing or bad."""
        if self.shape is None:
            return self
        found = self.shape(**options)
        return replace(self, num_classes=found.num_classes,
                       input_shape=tuple(found.input_shape), backbone=found.backbone,
                       memory_bytes=found.memory_bytes or self.memory_bytes)


STREAMS: Registry[StreamSpec] = Registry("stream")


def register_stream(spec: StreamSpec) -> StreamSpec:
    """Adds a stream to the registry (one call per stream module)."""
    return STREAMS.add(spec)


def get_stream(name: str) -> StreamSpec:
    return STREAMS.get(name)


def resolve_stream_options(spec: StreamSpec, given: dict[str, Any]) -> dict[str, Any]:
    """Every option of the stream with its value, validated; the split is checked when the
    stream's class count is known (from the spec, or from the files the options name)."""
    resolved = resolve(spec.options, given, spec.name, "stream")
    spec = spec.for_options(resolved)
    if spec.num_classes is not None and "n_experiences" in resolved:
        split_classes(range(spec.num_classes), resolved["n_experiences"], resolved.get("first"))
    return resolved


N_EXPERIENCES_HELP = "number of experiences"


def n_experiences_option(default: int, help_text: str = N_EXPERIENCES_HELP) -> Option:
    return Option("n_experiences", int, default, help_text, low=1)


def first_option() -> Option:
    return Option("first", int, None, "classes in the first experience (the rest split evenly "
                  "over the others); none = all equal", low=1, nullable=True)


def train_per_class_option() -> Option:
    return Option("train_per_class", int, None, "training samples kept per class (a draw "
                  "seeded by the seed and the class, in the data set's order); none: all",
                  low=1, nullable=True)


def augment_option() -> Option:
    return Option("augment", bool, True,
                  "random crop (4-pixel padding) + horizontal flip of training batches")
