"""Stream registry. A stream is added by writing one module that calls ``register_stream`` and
importing it here."""
from benchmark.streams.base import (  # noqa: F401
    STREAMS,
    StreamData,
    StreamOption,
    StreamSpec,
    class_order,
    get_stream,
    register_stream,
    resolve_stream_options,
    split_by_classes,
    split_classes,
)
from benchmark.streams import digits  # noqa: F401,E402
from benchmark.streams import mnist  # noqa: F401,E402
from benchmark.streams import cifar  # noqa: F401,E402
from benchmark.streams import tinyimagenet  # noqa: F401,E402
