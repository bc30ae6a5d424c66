"""``split-cifar10`` (5 x 2 classes) and ``split-cifar100`` (10 x 10, or 50 + 5 x 10) from the
CIFAR python archives.

Files, as torchvision extracts them into the data root:

- CIFAR-10: ``ROOT/cifar-10-batches-py/data_batch_1`` .. ``data_batch_5`` and ``test_batch``;
- CIFAR-100: ``ROOT/cifar-100-python/train`` and ``test`` (the 100 *fine* labels are used).

Each file is a pickled dict with ``data`` (N x 3072 uint8, channel-major 32 x 32 images) and
``labels`` / ``fine_labels``; it is read with ``pickle`` (the archives are trusted data: do not
point the data root at files from an unknown source). ``download=True`` fetches and extracts the
archives with torchvision. The split is the data set's own (50,000 train / 10,000 test); the
seed decides the class order. Inputs are 3 x 32 x 32, stored as uint8 and normalised per channel
with the data set's mean and std batch by batch on the device (``decode``); training batches
get a random 32 x 32 crop of the 4-pixel-padded image and a horizontal flip (``augment``
option, on by default).

CIFAR-100's 50 + 5 x 10 protocol is ``first=50, n_experiences=6``. Its default backbone is the
reduced ResNet-18; ``resnet32`` (``benchmark.models``) is the other common choice.
"""
from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.core.errors import one_line
from benchmark.data.augment import standard_crop_flip
from benchmark.data.base import StreamData
from benchmark.data.files import (
    check_bool,
    check_labels,
    corrupt_file_error,
    download_with,
    image_stream,
    memoized,
    missing_file_error,
    require_root,
    resolve_data_root,
)
from benchmark.data.registry import (
    StreamSpec,
    augment_option,
    first_option,
    n_experiences_option,
    register_stream,
)

CIFAR_PIXELS = 3 * 32 * 32


def parse_cifar_batch(obj, label_key: str):
    """(images uint8 (N, 3, 32, 32), labels int64) of an unpickled CIFAR batch dict;
    ValueError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"holds a {type(obj).__name__}, not a CIFAR batch dict")
    obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    for key in ("data", label_key):
        if key not in obj:
            raise ValueError(f"no {key!r} entry")
    data = np.asarray(obj["data"])
    labels = np.asarray(obj[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        raise ValueError(f"data of shape {data.shape} and type {data.dtype}, expected "
                         f"(N, {CIFAR_PIXELS}) uint8")
    if labels.shape != (len(data),):
        raise ValueError(f"{labels.size} labels for {len(data)} images")
    return data.reshape(-1, 3, 32, 32), labels


class CifarFormat:
    """One CIFAR python archive extracted under ``ROOT/<folder>``."""

    def __init__(self, stream: str, folder: str, archive: str, title: str, num_classes: int,
                 train_files: Sequence[str], test_files: Sequence[str], label_key: str,
                 mean, std, torchvision_class: str):
        self.stream = stream
        self.folder = folder
        self.archive = archive
        self.title = title
        self.num_classes = num_classes
        self.train_files = tuple(train_files)
        self.test_files = tuple(test_files)
        self.label_key = label_key
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.torchvision_class = torchvision_class

    def fix(self, root: Path) -> str:
        return (f"extract the {self.title} python archive ({self.archive}) into {root}, "
                "or pass --download")

    def paths(self, root: Path):
        return [root / self.folder / f for f in self.train_files + self.test_files]

    def download(self, root: Path) -> None:
        def fetch():
            import torchvision.datasets as tvd

            getattr(tvd, self.torchvision_class)(str(root), train=True, download=True)

        download_with(self.stream, root, self.archive, fetch)

    def read(self, path: Path, root: Path):
        try:
            with open(path, "rb") as f:
                obj = pickle.load(f, encoding="latin1")
            return parse_cifar_batch(obj, self.label_key)
        except ValueError as err:
            raise corrupt_file_error(self.stream, path, str(err), self.fix(root)) from None
        except Exception as err:  # whatever unpickling a damaged file raises
            raise corrupt_file_error(self.stream, path, one_line(err), self.fix(root)) from None

    def load(self, data_root: Optional[str], download: bool):
        """(x_train, y_train, x_test, y_test): uint8 (N, 3, 32, 32) images, int64 labels."""
        root = resolve_data_root(data_root)
        if download and not all(p.is_file() for p in self.paths(root)):
            self.download(root)
        require_root(self.stream, root, self.fix(root))
        for path in self.paths(root):
            if not path.is_file():
                raise missing_file_error(self.stream, path, self.fix(root))
        return memoized(self.stream, self.paths(root), lambda: self._parse(root))

    def _parse(self, root: Path):
        arrays = []
        for files in (self.train_files, self.test_files):
            parts = [self.read(root / self.folder / f, root) for f in files]
            x = np.concatenate([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
            check_labels(self.stream, y, self.num_classes, root / self.folder / files[-1],
                         self.fix(root))
            arrays += [x, y]
        return tuple(arrays)

    def build(self, seed: int, data_root=None, download: bool = False, n_experiences: int = 5,
              first: Optional[int] = None, augment: bool = True,
              options: Optional[dict] = None) -> StreamData:
        """The stream for ``seed``; ``options`` is what the record lists as the stream's."""
        check_bool(self.stream, "augment", augment)
        arrays = self.load(data_root, download)
        return image_stream(
            name=self.stream, seed=seed, arrays=arrays, num_classes=self.num_classes,
            mean=self.mean, std=self.std, backbone="reduced-resnet18",
            n_experiences=n_experiences, first=first,
            augment=standard_crop_flip(self.mean, self.std) if augment else None,
            options=options)


CIFAR10 = CifarFormat(
    "split-cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz", "CIFAR-10", 10,
    [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels",
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), torchvision_class="CIFAR10")
CIFAR100 = CifarFormat(
    "split-cifar100", "cifar-100-python", "cifar-100-python.tar.gz", "CIFAR-100", 100,
    ["train"], ["test"], "fine_labels",
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), torchvision_class="CIFAR100")

TRAIN_DEFAULTS = {"epochs": 30, "batch_size": 32, "lr": 0.03, "optimizer": "sgd"}


def build_split_cifar10(seed: int, data_root=None, download: bool = False, n_experiences: int = 5,
                        augment: bool = True) -> StreamData:
    """CIFAR-10, ``n_experiences`` x (10 / n_experiences) classes."""
    return CIFAR10.build(seed, data_root, download, n_experiences=n_experiences, augment=augment,
                         options={"n_experiences": n_experiences, "augment": augment})


def build_split_cifar100(seed: int, data_root=None, download: bool = False,
                         n_experiences: int = 10, first: Optional[int] = None,
                         augment: bool = True) -> StreamData:
    """CIFAR-100, 10 x 10 by default; ``first=50, n_experiences=6`` gives 50 + 5 x 10."""
    return CIFAR100.build(seed, data_root, download, n_experiences=n_experiences, first=first,
                          augment=augment, options={"n_experiences": n_experiences,
                                                    "first": first, "augment": augment})


register_stream(
    StreamSpec(
        name="split-cifar10",
        build=build_split_cifar10,
        summary="CIFAR-10 (python batches under ROOT/cifar-10-batches-py), 5 x 2 classes",
        backbone="reduced-resnet18",
        train_defaults=dict(TRAIN_DEFAULTS),
        options=(n_experiences_option(5, "number of experiences (divides 10)"),
                 augment_option()),
        needs_data_root=True,
        num_classes=10,
        input_shape=(3, 32, 32),
        memory_bytes=1000 * (3072 + 8),  # 1,000 uint8 images and int64 labels
    )
)
register_stream(
    StreamSpec(
        name="split-cifar100",
        build=build_split_cifar100,
        summary="CIFAR-100 (python files under ROOT/cifar-100-python), 10 x 10 classes "
                "(50 + 5 x 10 with first=50, n_experiences=6)",
        backbone="reduced-resnet18",
        train_defaults=dict(TRAIN_DEFAULTS),
        options=(n_experiences_option(10), first_option(), augment_option()),
        needs_data_root=True,
        num_classes=100,
        input_shape=(3, 32, 32),
        memory_bytes=2000 * (3072 + 8),  # 2,000 uint8 images and int64 labels
    )
)
