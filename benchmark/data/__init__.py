"""Streams: class-incremental experiences as tensors, and the registry of stream builders.

A stream is added by writing one module that calls ``register_stream`` and importing it below.
"""
from benchmark.data import cifar, digits, mnist, tinyimagenet  # noqa: F401,E402
from benchmark.data.base import (  # noqa: F401
    StreamData,
    class_order,
    split_by_classes,
    split_classes,
)
from benchmark.data.registry import (  # noqa: F401
    STREAMS,
    StreamSpec,
    get_stream,
    register_stream,
    resolve_stream_options,
)
