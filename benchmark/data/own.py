"""What the streams over the user's own data (``split-tensors``, ``split-folder``) share: the
``path`` option, the checks of labels, the default backbone and memory budget by input shape.

Labels must be the integers 0..C-1 with every class present in the training *and* the test
split (C = the largest training label + 1), so that each experience can be trained and
evaluated. The default backbone follows the shape of one input: 1-D feature vectors -> ``mlp``,
images (C, H, W) -> ``cnn``. The default memory budget of the strategies that keep samples is
20 samples per class (the other streams' convention: 200 for split-digits' 10 classes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.core.errors import UsageError
from benchmark.core.options import Option

SAMPLES_PER_CLASS_IN_MEMORY = 20
TRAIN_DEFAULTS = {"epochs": 5, "batch_size": 32, "lr": 0.001, "optimizer": "adam"}
LABEL_BYTES = 8  # int64


def path_option(what: str) -> Option:
    return Option("path", str, None, what)


def require_path(stream: str, path: Optional[str], what: str, example: str) -> Path:
    """The ``path`` option as an absolute path; UsageError if it is unset or names nothing."""
    if path is None:
        raise UsageError(f"{stream}: the stream option path is required ({what}); set it in "
                         f"the experiment file: [stream_options.{stream}] path = \"{example}\"")
    resolved = Path(path).expanduser().absolute()
    if not resolved.exists():
        raise UsageError(f"{stream}: {resolved} does not exist; set [stream_options.{stream}] "
                         f"path to {what}")
    return resolved


def class_count(stream: str, where: Path, y_train: np.ndarray, y_test: np.ndarray) -> int:
    """C = max(y_train) + 1, after checking that the labels are 0..C-1, every class has a
    training and a test sample, and the test labels are among the training classes."""
    if y_train.size == 0:
        raise UsageError(f"{stream}: {where}: y_train is empty")
    if y_train.min() < 0 or y_test.size and y_test.min() < 0:
        raise UsageError(f"{stream}: {where}: labels must be 0..C-1, found a negative label")
    num_classes = int(y_train.max()) + 1
    absent = np.flatnonzero(np.bincount(y_train, minlength=num_classes) == 0)
    if absent.size:
        raise UsageError(f"{stream}: {where}: labels must be 0..C-1 with every class in y_train "
                         f"(C = {num_classes}); class {absent[0]} has no training sample")
    if y_test.size and y_test.max() >= num_classes:
        raise UsageError(f"{stream}: {where}: y_test holds label {int(y_test.max())}, outside "
                         f"the training classes 0..{num_classes - 1}")
    untested = np.flatnonzero(np.bincount(y_test, minlength=num_classes) == 0)
    if untested.size:
        raise UsageError(f"{stream}: {where}: class {untested[0]} has no test sample; every "
                         "class needs test samples to be evaluated")
    return num_classes


def default_backbone(stream: str, where: Path, input_shape: tuple[int, ...]) -> str:
    """``mlp`` for 1-D inputs, ``cnn`` for (C, H, W) images; UsageError for other shapes."""
    if len(input_shape) == 1:
        return "mlp"
    if len(input_shape) == 3:
        return "cnn"
    raise UsageError(f"{stream}: {where}: inputs of shape {tuple(input_shape)}; give feature "
                     "vectors (N, F), greyscale images (N, H, W) or images (N, C, H, W)")


def memory_budget(num_classes: int, input_bytes: int) -> int:
    """Default memory budget: ``SAMPLES_PER_CLASS_IN_MEMORY`` stored samples per class."""
    return SAMPLES_PER_CLASS_IN_MEMORY * num_classes * (input_bytes + LABEL_BYTES)
