"""``split-mnist`` and ``split-fashion-mnist``: 5 experiences x 2 classes from IDX files.

The four files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each either plain or gzipped
(``.gz``; the plain file is used when both exist), are looked for in these folders, in order:

1. the data root's torchvision layout, ``ROOT/MNIST/raw/`` or ``ROOT/FashionMNIST/raw/`` (the
   data root being ``--data-root``, else ``$CLONEBENCH_DATA``, else ``~/.cache/clonebench/data``);
2. for Fashion-MNIST only, the system folder of Debian's package ``dataset-fashion-mnist``
   (``SYSTEM_FOLDERS``: ``/usr/share/datasets/fashion-mnist/``, the four ``.gz`` files side by
   side).

The first folder holding any of the four files is the one read, and it must hold all four (a
partial copy is an error, never silently completed from elsewhere). They are parsed with NumPy
(no torchvision import unless ``download=True``, which fetches missing files into the data
root with torchvision's MNIST/FashionMNIST). The split is the data set's own (60,000 train /
10,000 test); the seed decides the class order; ``train_per_class`` keeps a seeded draw of that
many training images per class (the test set stays whole). Inputs are 1 x H x W (28 x 28)
uint8, decoded batch by batch by normalising with the data set's mean and std; no
augmentation.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.core.errors import one_line
from benchmark.data.base import StreamData
from benchmark.data.files import (
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
    n_experiences_option,
    register_stream,
    train_per_class_option,
)

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_UBYTE = 0x08
# Flat folders that system packages fill with the four files, per stream (tests point them
# elsewhere).
SYSTEM_FOLDERS = {"split-fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
APT_PACKAGES = {"split-fashion-mnist": "dataset-fashion-mnist"}


def parse_idx(data: bytes, ndim: int) -> np.ndarray:
    """An IDX unsigned-byte array of ``ndim`` dimensions; ValueError saying what is wrong.

    Layout: two zero bytes, type code 0x08 (unsigned byte), the number of dimensions, each
    dimension as a big-endian int32, then the values in C order.
    """
    if len(data) < 4:
        raise ValueError(f"{len(data)} bytes, shorter than the IDX header")
    if data[0] != 0 or data[1] != 0 or data[2] != IDX_UBYTE:
        raise ValueError("not an IDX unsigned-byte file (bad magic number)")
    if data[3] != ndim:
        raise ValueError(f"{data[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError("header cut short")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(dims))
    found = len(data) - header
    if found != expected:
        raise ValueError(f"{found} data bytes for shape {dims}, expected {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


class MnistFormat:
    """One IDX-format data set under ``ROOT/<folder>/raw/``."""

    def __init__(self, stream: str, folder: str, title: str, mean: float, std: float,
                 torchvision_class: str):
        self.stream = stream
        self.folder = folder
        self.title = title
        self.mean = mean
        self.std = std
        self.torchvision_class = torchvision_class

    def raw(self, root: Path) -> Path:
        return root / self.folder / "raw"

    def folders(self, root: Path) -> list[Path]:
        """Where the files are looked for, in order: the data root's layout, then the system
        folder (if the stream has one)."""
        system = SYSTEM_FOLDERS.get(self.stream)
        return [self.raw(root)] + ([Path(system)] if system is not None else [])

    def fix(self, root: Path) -> str:
        text = (f"put the four {self.title} IDX files ({', '.join(IDX_FILES.values())}, "
                f"plain or .gz) in {self.raw(root)}, or pass --download")
        package = APT_PACKAGES.get(self.stream)
        if package is not None:
            text += (f", or install Debian's package (apt-get install {package}, which puts "
                     f"them in {SYSTEM_FOLDERS[self.stream]})")
        return text

    def find(self, folder: Path) -> dict[str, Optional[Path]]:
        """Each IDX file's path in ``folder`` (plain preferred over .gz), or None."""
        found = {}
        for key, name in IDX_FILES.items():
            plain, gz = folder / name, folder / (name + ".gz")
            found[key] = plain if plain.is_file() else gz if gz.is_file() else None
        return found

    def locate(self, root: Path) -> tuple[Path, dict[str, Optional[Path]]]:
        """The folder to read (the first of ``folders`` holding any of the four files, else
        the data root's) and what it holds."""
        for folder in self.folders(root):
            paths = self.find(folder)
            if any(p is not None for p in paths.values()):
                return folder, paths
        return self.raw(root), self.find(self.raw(root))

    def download(self, root: Path) -> None:
        def fetch():
            import torchvision.datasets as tvd

            dataset = getattr(tvd, self.torchvision_class)
            for train in (True, False):
                dataset(str(root), train=train, download=True)

        download_with(self.stream, root, f"{self.title}", fetch)

    def read(self, path: Path, ndim: int, root: Path) -> np.ndarray:
        try:
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            return parse_idx(data, ndim)
        except (OSError, EOFError, zlib.error, ValueError) as err:
            problem = str(err) if isinstance(err, ValueError) else one_line(err)
            raise corrupt_file_error(self.stream, path, problem, self.fix(root)) from None

    def load(self, data_root: Optional[str], download: bool):
        """(x_train, y_train, x_test, y_test): uint8 (N, 1, H, W) images and int64 labels,
        from the first folder of the search order that holds the files (see the module)."""
        root = resolve_data_root(data_root)
        folder, paths = self.locate(root)
        if any(p is None for p in paths.values()) and download:
            self.download(root)
            folder, paths = self.raw(root), self.find(self.raw(root))
        if folder == self.raw(root):
            require_root(self.stream, root, self.fix(root))
        for key, path in paths.items():
            if path is None:
                raise missing_file_error(self.stream, folder / IDX_FILES[key], self.fix(root))
        return memoized(self.stream, list(paths.values()), lambda: self._parse(paths, root))

    def _parse(self, paths: dict[str, Path], root: Path):
        arrays = []
        for split in ("train", "test"):
            images = self.read(paths[f"{split}_images"], 3, root)
            labels = self.read(paths[f"{split}_labels"], 1, root).astype(np.int64)
            if len(images) != len(labels):
                raise corrupt_file_error(
                    self.stream, paths[f"{split}_labels"],
                    f"{len(labels)} labels for {len(images)} images", self.fix(root))
            check_labels(self.stream, labels, 10, paths[f"{split}_labels"], self.fix(root))
            arrays += [images[:, None], labels]
        if arrays[0].shape[1:] != arrays[2].shape[1:]:
            raise corrupt_file_error(self.stream, paths["test_images"],
                                     f"images of shape {arrays[2].shape[2:]}, the training "
                                     f"images are {arrays[0].shape[2:]}", self.fix(root))
        return tuple(arrays)

    def build(self, seed: int, data_root=None, download: bool = False,
              n_experiences: int = 5, train_per_class: Optional[int] = None) -> StreamData:
        arrays = self.load(data_root, download)
        return image_stream(name=self.stream, seed=seed, arrays=arrays, num_classes=10,
                            mean=(self.mean,), std=(self.std,), backbone="cnn",
                            n_experiences=n_experiences, train_per_class=train_per_class,
                            options={"n_experiences": n_experiences,
                                     "train_per_class": train_per_class})


MNIST = MnistFormat("split-mnist", "MNIST", "MNIST", 0.1307, 0.3081, "MNIST")
FASHION_MNIST = MnistFormat("split-fashion-mnist", "FashionMNIST", "Fashion-MNIST", 0.2860,
                            0.3530, "FashionMNIST")

TRAIN_DEFAULTS = {"epochs": 2, "batch_size": 64, "lr": 0.001, "optimizer": "adam"}

for _fmt, _summary in (
    (MNIST, "MNIST handwritten digits (IDX files under ROOT/MNIST/raw), 5 x 2 classes"),
    (FASHION_MNIST, "Fashion-MNIST (IDX files under ROOT/FashionMNIST/raw, else Debian's "
                    "/usr/share/datasets/fashion-mnist), 5 x 2 classes"),
):
    register_stream(
        StreamSpec(
            name=_fmt.stream,
            build=_fmt.build,
            summary=_summary,
            backbone="cnn",
            train_defaults=dict(TRAIN_DEFAULTS),
            options=(n_experiences_option(5, "number of experiences (divides 10)"),
                     train_per_class_option()),
            needs_data_root=True,
            num_classes=10,
            input_shape=(1, 28, 28),
            memory_bytes=1000 * (784 + 8),  # 1,000 uint8 images and int64 labels
        )
    )
