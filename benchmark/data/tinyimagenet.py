"""``split-tinyimagenet``: Tiny-ImageNet (200 classes), 10 experiences x 20 classes.

Files, as ``tiny-imagenet-200.zip`` extracts into the data root::

    ROOT/tiny-imagenet-200/wnids.txt                      one WordNet id per line (the classes)
    ROOT/tiny-imagenet-200/train/<wnid>/images/*.JPEG     500 training images per class
    ROOT/tiny-imagenet-200/val/images/*.JPEG              10,000 validation images
    ROOT/tiny-imagenet-200/val/val_annotations.txt        "<file>\\t<wnid>\\t<box...>" per line

Class c is the c-th wnid in sorted order. The labelled validation set serves as the test split
(the official test images have no labels). Images are decoded with PIL (several threads),
converted to RGB (a few are greyscale) and must all share one size (64 x 64). Inputs are stored
as uint8 and normalised per channel batch by batch on the device (``decode``); training batches
get a random crop of the 4-pixel-padded image and a horizontal flip (``augment`` option).
``download=True`` fetches the archive from Stanford's CS231n site with torchvision's downloader.
The seed decides the class order.

Memory: the whole data set is held as uint8 (about 1.35 GB for 110,000 images, where float32
would take 5.4 GB); see ``StreamData.to`` for how it is placed on a GPU.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.core.errors import UsageError, one_line
from benchmark.data.augment import standard_crop_flip
from benchmark.data.base import StreamData
from benchmark.data.files import (
    check_bool,
    check_labels,
    corrupt_file_error,
    download_with,
    image_stream,
    memoized_tree,
    missing_file_error,
    require_root,
    resolve_data_root,
)
from benchmark.data.registry import (
    StreamSpec,
    augment_option,
    n_experiences_option,
    register_stream,
)

STREAM = "split-tinyimagenet"
FOLDER = "tiny-imagenet-200"
ARCHIVE_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ARCHIVE_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2770, 0.2691, 0.2821)
IMAGE_SUFFIXES = (".jpeg", ".jpg")
TRAIN_DEFAULTS = {"epochs": 30, "batch_size": 64, "lr": 0.03, "optimizer": "sgd"}


def fix(root: Path) -> str:
    return (f"extract tiny-imagenet-200.zip into {root} (giving {root / FOLDER}/), "
            "or pass --download")


def read_wnids(path: Path, root: Path) -> list[str]:
    """The class ids listed in ``wnids.txt``, sorted (class c = c-th id)."""
    try:
        wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise corrupt_file_error(STREAM, path, one_line(err), fix(root)) from None
    if not wnids:
        raise corrupt_file_error(STREAM, path, "no class id in it", fix(root))
    if len(set(wnids)) != len(wnids):
        raise corrupt_file_error(STREAM, path, "a class id is listed twice", fix(root))
    return sorted(wnids)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def train_files(base: Path, wnids: list[str], root: Path) -> list[tuple[Path, int]]:
    """(image path, label) of every training image, class by class."""
    out = []
    for label, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        if not folder.is_dir():
            raise missing_file_error(STREAM, folder, fix(root))
        images = list_images(folder)
        if not images:
            raise UsageError(f"{STREAM}: {folder} holds no .JPEG image; the data set is "
                             f"incomplete; {fix(root)}")
        out += [(p, label) for p in images]
    return out


def val_files(base: Path, wnids: list[str], root: Path) -> list[tuple[Path, int]]:
    """(image path, label) of every validation image listed in ``val_annotations.txt``."""
    notes = base / "val" / "val_annotations.txt"
    if not notes.is_file():
        raise missing_file_error(STREAM, notes, fix(root))
    index: dict[str, int] = {w: i for i, w in enumerate(wnids)}
    try:
        lines = [line for line in notes.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise corrupt_file_error(STREAM, notes, one_line(err), fix(root)) from None
    out = []
    for number, line in enumerate(lines, 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise corrupt_file_error(STREAM, notes, f"line {number} does not name an image and "
                                     "a class of wnids.txt", fix(root))
        path = base / "val" / "images" / fields[0]
        if not path.is_file():
            raise missing_file_error(STREAM, path, fix(root))
        out.append((path, index[fields[1]]))
    if not out:
        raise corrupt_file_error(STREAM, notes, "no image listed", fix(root))
    return out


def decode(path: Path, root: Path) -> np.ndarray:
    """An image file as uint8 (3, H, W) RGB."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise corrupt_file_error(STREAM, path, f"not a readable image: {one_line(err)}",
                                 fix(root)) from None
    return array.transpose(2, 0, 1)


def decode_all(files: list[tuple[Path, int]], root: Path, shape=None):
    """(images uint8 (N, 3, H, W), labels int64); every image must have ``shape`` (default:
    the first image's)."""
    workers = min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(lambda f: decode(f[0], root), files))
    shape = shape or images[0].shape
    for (path, _), img in zip(files, images):
        if img.shape != shape:
            raise corrupt_file_error(STREAM, path, f"image of size {img.shape[2]}x{img.shape[1]}, "
                                     f"the others are {shape[2]}x{shape[1]}", fix(root))
    labels = np.array([label for _, label in files], dtype=np.int64)
    return np.stack(images), labels


def download(root: Path) -> None:
    def fetch():
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(ARCHIVE_URL, download_root=str(root), md5=ARCHIVE_MD5)

    download_with(STREAM, root, "tiny-imagenet-200.zip", fetch)


def load(data_root: Optional[str], download_missing: bool):
    """(x_train, y_train, x_test, y_test) (uint8 (N, 3, 64, 64) images and int64 labels) and
    the class count; read once while the tree is unchanged (``memoized_tree``: the class
    folders' entries and every file's size and mtime)."""
    root = resolve_data_root(data_root)
    base = root / FOLDER
    wnids_path = base / "wnids.txt"
    if download_missing and not wnids_path.is_file():
        download(root)
    require_root(STREAM, root, fix(root))
    if not wnids_path.is_file():
        raise missing_file_error(STREAM, wnids_path, fix(root))
    notes = base / "val" / "val_annotations.txt"

    def walk():
        wnids = read_wnids(wnids_path, root)
        train, val = train_files(base, wnids, root), val_files(base, wnids, root)
        folders = [base / "train" / wnid / "images" for wnid in wnids]
        files = [wnids_path, notes] + [p for p, _ in train + val]
        return folders, files, (len(wnids), train, val)

    def parse(found):
        num_classes, train, val = found
        x_tr, y_tr = decode_all(train, root)
        x_te, y_te = decode_all(val, root, shape=x_tr.shape[1:])
        check_labels(STREAM, y_te, num_classes, notes, fix(root))
        return (x_tr, y_tr, x_te, y_te), num_classes

    return memoized_tree(f"{STREAM}:{base}", walk, parse)


def build_split_tinyimagenet(seed: int, data_root=None, download: bool = False,
                             n_experiences: int = 10, augment: bool = True) -> StreamData:
    """Tiny-ImageNet, ``n_experiences`` x (classes / n_experiences) classes."""
    check_bool(STREAM, "augment", augment)
    arrays, num_classes = load(data_root, download)
    return image_stream(name=STREAM, seed=seed, arrays=arrays, num_classes=num_classes,
                        mean=MEAN, std=STD, backbone="resnet18", n_experiences=n_experiences,
                        augment=standard_crop_flip(MEAN, STD) if augment else None,
                        options={"n_experiences": n_experiences, "augment": augment})


register_stream(
    StreamSpec(
        name=STREAM,
        build=build_split_tinyimagenet,
        summary="Tiny-ImageNet (folder tree under ROOT/tiny-imagenet-200), 10 x 20 classes",
        backbone="resnet18",
        train_defaults=dict(TRAIN_DEFAULTS),
        options=(n_experiences_option(10, "number of experiences (divides the 200 classes)"),
                 augment_option()),
        needs_data_root=True,
        num_classes=200,
        input_shape=(3, 64, 64),
        memory_bytes=4000 * (12288 + 8),  # 4,000 uint8 images and int64 labels
    )
)
