"""Streams: class-incremental experiences as tensors, and the registry of stream builders.

A stream is added by writing one module that calls ``register_stream`` and importing it below.
"""
from benchmark.data import (  # noqa: F401,E402
    cifar,
    digits,
    imagefolder,
    mnist,
    tensorfile,
    tinyimagenet,
)
from benchmark.data.base import (  # noqa: F401
    StreamData,
    class_order,
    split_by_classes,
    split_classes,
    stratified_holdout,
    validation_split,
)
from benchmark.data.registry import (  # noqa: F401
    STREAMS,
    StreamShape,
    StreamSpec,
    get_stream,
    register_stream,
    resolve_stream_options,
)
