"""``split-folder``: the user's own images in a folder tree, no code needed.

Layout (stream option ``path``)::

    PATH/train/<class>/*.png|*.jpg|*.jpeg
    PATH/test/<class>/*.png|*.jpg|*.jpeg

The classes are the sub-folders of ``train`` in sorted order (class c = the c-th name); ``test``
must hold the same class folders, and every class folder at least one image. Files of other
types and names starting with ``.`` are ignored. Images are decoded with PIL (several threads),
converted to RGB (or to greyscale with ``grayscale = true``) and resized to ``size`` x ``size``
pixels (bilinear, aspect ratio not kept); they are stored as uint8 (C, size, size) and decoded
batch by batch to x / 255 (0..1). Default backbone ``cnn``; no augmentation. ``n_experiences``
(default 2) and ``first`` split the classes as for the other streams; the seed decides the class
order. Everything is checked before any run or file is written.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.core.errors import UsageError, one_line
from benchmark.core.options import Option
from benchmark.data.base import StreamData
from benchmark.data.files import Scale, array_stream, memoized_tree
from benchmark.data.own import TRAIN_DEFAULTS, memory_budget, path_option, require_path
from benchmark.data.registry import (
    StreamShape,
    StreamSpec,
    first_option,
    n_experiences_option,
    register_stream,
    train_per_class_option,
)

STREAM = "split-folder"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
WHAT = "a folder holding train/<class>/ and test/<class>/ sub-folders of PNG or JPEG images"


def class_folders(split: Path) -> list[str]:
    """The class folder names of ``split``, sorted; UsageError if it is missing or empty."""
    if not split.is_dir():
        raise UsageError(f"{STREAM}: {split} is missing; give {WHAT}")
    names = sorted(p.name for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise UsageError(f"{STREAM}: {split} holds no class folder; give {WHAT}")
    return names


def classes_of(root: Path) -> list[str]:
    """The class names, the same in ``train`` and ``test``; UsageError if they differ."""
    train, test = class_folders(root / "train"), class_folders(root / "test")
    if train != test:
        only_train = sorted(set(train) - set(test))
        only_test = sorted(set(test) - set(train))
        parts = ([f"{', '.join(only_train)} only in train"] if only_train else []) + \
            ([f"{', '.join(only_test)} only in test"] if only_test else [])
        raise UsageError(f"{STREAM}: {root}: the class folders of train and test differ "
                         f"({'; '.join(parts)}); they must be the same")
    return train


def image_files(root: Path, classes: list[str]) -> dict[str, list[tuple[Path, int]]]:
    """(image path, label) per split, class by class, files in sorted order."""
    out = {}
    for split in ("train", "test"):
        files = []
        for label, name in enumerate(classes):
            folder = root / split / name
            images = sorted(p for p in folder.iterdir() if p.is_file()
                            and not p.name.startswith(".")
                            and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise UsageError(f"{STREAM}: {folder} holds no PNG or JPEG image; every class "
                                 "needs training and test images")
            files += [(p, label) for p in images]
        out[split] = files
    return out


def read_image(path: Path, size: int, grayscale: bool) -> np.ndarray:
    """An image file as uint8 (C, size, size): RGB (C = 3) or greyscale (C = 1), resized."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("L" if grayscale else "RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as err:
        raise UsageError(f"{STREAM}: {path} is not a readable image ({one_line(err)}); "
                         "replace or remove it") from None
    return array[None] if grayscale else array.transpose(2, 0, 1)


def read_split(files: list[tuple[Path, int]], size: int, grayscale: bool):
    """(images uint8 (N, C, size, size), labels int64), decoded on several threads."""
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(lambda f: read_image(f[0], size, grayscale), files))
    return np.stack(images), np.array([label for _, label in files], dtype=np.int64)


def load(path: Optional[str], size: int, grayscale: bool):
    """(x_train, y_train, x_test, y_test) of the tree at ``path`` and the class names; read
    once while the tree is unchanged (``memoized_tree``: the entries of ``train``, ``test``
    and their class folders, and every image's size and mtime)."""
    root = require_path(STREAM, path, WHAT, "my-images")

    def walk():
        classes = classes_of(root)
        files = image_files(root, classes)
        folders = [root / split for split in ("train", "test")]
        folders += [root / split / name for split in ("train", "test") for name in classes]
        paths = [p for split in ("train", "test") for p, _ in files[split]]
        return folders, paths, (classes, files)

    def parse(found):
        classes, files = found
        arrays = read_split(files["train"], size, grayscale) + \
            read_split(files["test"], size, grayscale)
        return arrays, classes

    return memoized_tree(f"{STREAM}:{root}:{size}:{grayscale}", walk, parse)


def folder_shape(path: Optional[str] = None, size: int = 32, grayscale: bool = False,
                 n_experiences: int = 2, first: Optional[int] = None,
                 train_per_class: Optional[int] = None) -> StreamShape:
    """Class count (from the folder names), input shape, backbone and memory budget."""
    classes = classes_of(require_path(STREAM, path, WHAT, "my-images"))
    shape = (1 if grayscale else 3, size, size)
    return StreamShape(len(classes), shape, "cnn", memory_budget(len(classes),
                                                                 int(np.prod(shape))))


def build_split_folder(seed: int, data_root=None, download: bool = False,
                       path: Optional[str] = None, size: int = 32, grayscale: bool = False,
                       n_experiences: int = 2, first: Optional[int] = None,
                       train_per_class: Optional[int] = None) -> StreamData:
    """The stream of the image tree at ``path`` for ``seed`` (``data_root`` and ``download``
    are unused)."""
    arrays, classes = load(path, size, grayscale)
    return array_stream(name=STREAM, seed=seed, arrays=arrays, num_classes=len(classes),
                        backbone="cnn", n_experiences=n_experiences, first=first,
                        decode=Scale(255.0), train_per_class=train_per_class,
                        options={"path": path, "size": size, "grayscale": grayscale,
                                 "n_experiences": n_experiences, "first": first,
                                 "train_per_class": train_per_class})


register_stream(
    StreamSpec(
        name=STREAM,
        build=build_split_folder,
        summary="your own images: PATH/train/<class>/* and PATH/test/<class>/* (PNG/JPEG, "
                "option path), resized to size x size",
        backbone="cnn",
        train_defaults=dict(TRAIN_DEFAULTS),
        options=(path_option(WHAT),
                 Option("size", int, 32, "images are resized to size x size pixels", low=4,
                        high=1024),
                 Option("grayscale", bool, False, "convert images to one grey channel "
                        "(else RGB)"),
                 n_experiences_option(2, "number of experiences (divides the class count, "
                                         "or the classes after the first experience)"),
                 first_option(), train_per_class_option()),
        shape=folder_shape,
    )
)
