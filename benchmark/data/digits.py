"""``split-digits``: scikit-learn's bundled 8x8 handwritten digits, 5 experiences x 2 classes.

1,797 images ship inside scikit-learn (no download). Pixels are scaled from 0..16 to 0..1 and
flattened to 64 features. The train/test split is fixed and stratified (20% test,
``random_state=0``) whatever the seed; the seed only decides the class order.
"""
from __future__ import annotations

import torch

from benchmark.data.base import StreamData, class_order, split_by_classes, split_classes
from benchmark.data.registry import StreamSpec, n_experiences_option, register_stream

TEST_FRACTION = 0.2


def _load_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=TEST_FRACTION, stratify=y.numpy(), random_state=0
    )
    idx_train, idx_test = torch.as_tensor(idx_train), torch.as_tensor(idx_test)
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def build_split_digits(seed: int, data_root=None, download: bool = False,
                       n_experiences: int = 5) -> StreamData:
    """The stream for ``seed`` (``data_root`` and ``download`` are unused: the data ship with
    scikit-learn)."""
    x_tr, y_tr, x_te, y_te = _load_digits()
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
    )


register_stream(
    StreamSpec(
        name="split-digits",
        build=build_split_digits,
        summary="scikit-learn's bundled 8x8 digits (1,797 images, no download), 5 x 2 classes",
        backbone="mlp",
        num_classes=10,
        input_shape=(64,),
        memory_bytes=200 * (64 + 8),  # 200 samples: 64 uint8 pixels and an int64 label each
        train_defaults={"epochs": 10, "batch_size": 32, "lr": 0.01, "optimizer": "adam"},
        options=(
            n_experiences_option(5, "number of experiences (divides 10)"),
        ),
    )
)
