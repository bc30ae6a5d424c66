"""``split-digits``: scikit-learn's bundled 8x8 handwritten digits, 5 experiences x 2 classes.

1,797 images ship inside scikit-learn (no download), each 64 pixels valued 0..16. They are stored
as uint8 (64 bytes an image) and decoded batch by batch to float32 features in 0..1 (x / 16).

The data set has no official test split, so each seed draws its own: a stratified 20% of every
class is held out for testing (``stratified_holdout(labels, 0.2, seed)``: 359 test and 1,438
training images), so intervals over seeds include the test sampling. The seed also decides the
class order.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from benchmark.data.base import (
    StreamData,
    class_order,
    split_by_classes,
    split_classes,
    stratified_holdout,
)
from benchmark.data.files import Scale
from benchmark.data.registry import StreamSpec, n_experiences_option, register_stream

TEST_FRACTION = 0.2


@lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images as uint8 (N, 64) pixels 0..16 and their int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data.astype(np.uint8), digits.target.astype(np.int64)


def digits_split(seed: int):
    """(x_train, y_train, x_test, y_test) of ``seed``'s stratified train/test split."""
    x, y = _load_digits()
    idx_train, idx_test = stratified_holdout(y, TEST_FRACTION, seed)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    idx_train, idx_test = torch.from_numpy(idx_train), torch.from_numpy(idx_test)
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def build_split_digits(seed: int, data_root=None, download: bool = False,
                       n_experiences: int = 5) -> StreamData:
    """The stream for ``seed`` (``data_root`` and ``download`` are unused: the data ship with
    scikit-learn)."""
    x_tr, y_tr, x_te, y_te = digits_split(seed)
    classes = split_classes(class_order(10, seed), n_experiences)
    return StreamData(
        name="split-digits",
        seed=seed,
        num_classes=10,
        input_shape=(64,),
        backbone="mlp",
        classes_per_step=classes,
        train=split_by_classes(x_tr, y_tr, classes),
        test=split_by_classes(x_te, y_te, classes),
        options={"n_experiences": n_experiences},
        decode=Scale(16.0),
        image_shape=(1, 8, 8),
    )


register_stream(
    StreamSpec(
        name="split-digits",
        build=build_split_digits,
        summary="scikit-learn's bundled 8x8 digits (1,797 images, no download), 5 x 2 classes",
        backbone="mlp",
        num_classes=10,
        input_shape=(64,),
        image_shape=(1, 8, 8),
        memory_bytes=200 * (64 + 8),  # 200 samples: 64 uint8 pixels and an int64 label each
        version=2,  # 2: a stratified train/test split per seed (1: one fixed split)
        train_defaults={"epochs": 10, "batch_size": 32, "lr": 0.01, "optimizer": "adam"},
        options=(
            n_experiences_option(5, "number of experiences (divides 10)"),
        ),
    )
)
