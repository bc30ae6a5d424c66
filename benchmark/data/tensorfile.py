"""``split-tensors``: the user's own data set from one ``.npz`` or ``.pt`` file, no code needed.

The file (stream option ``path``) holds four arrays: ``x_train`` and ``x_test`` (one row per
sample, the same per-sample shape in both) and ``y_train`` and ``y_test`` (1-D integer labels,
one per sample). A ``.npz`` is read with NumPy (``np.savez``; no pickled objects); a ``.pt`` is
a dict of tensors (or arrays) saved with ``torch.save`` and read with ``weights_only=True``.

- Inputs: uint8 inputs stay uint8 and are decoded batch by batch to x / 255 (0..1); floating
  inputs are kept as float32 and used as they are. Other dtypes are refused.
- Shape: (N, F) feature vectors (default backbone ``mlp``), (N, H, W) greyscale images (a
  channel axis is added: 1 x H x W) or (N, C, H, W) images (default backbone ``cnn``).
- Labels: 0..C-1, every class present in both splits (``benchmark.data.own``); any C.
- Split: ``n_experiences`` (default 2) and ``first`` as for the other streams; the seed
  decides the class order; the file's own train/test split is kept.

Everything is checked when the experiment is planned, before any run or file is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from benchmark.core.errors import UsageError, one_line
from benchmark.data.base import StreamData
from benchmark.data.files import Scale, array_stream, memoized
from benchmark.data.own import (
    TRAIN_DEFAULTS,
    class_count,
    default_backbone,
    memory_budget,
    path_option,
    require_path,
)
from benchmark.data.registry import (
    StreamShape,
    StreamSpec,
    first_option,
    n_experiences_option,
    register_stream,
)

STREAM = "split-tensors"
KEYS = ("x_train", "y_train", "x_test", "y_test")
SUFFIXES = (".npz", ".pt")
WHAT = "a .npz or .pt file holding x_train, y_train, x_test and y_test"


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of a ``.npz`` or ``.pt`` file; UsageError if it cannot be read or lacks
    one of them."""
    if path.suffix not in SUFFIXES:
        raise UsageError(f"{STREAM}: {path} is not a .npz or .pt file; give {WHAT}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                found = {key: npz[key] for key in npz.files if key in KEYS}
                names = list(npz.files)
        else:
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict):
                raise UsageError(f"{STREAM}: {path} holds a {type(obj).__name__}, not a dict; "
                                 f"give {WHAT}")
            names = [str(k) for k in obj]
            found = {k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                     for k, v in obj.items() if k in KEYS}
    except UsageError:
        raise
    except Exception as err:  # OSError, BadZipFile, unpickling errors of a damaged file...
        raise UsageError(f"{STREAM}: {path} cannot be read ({one_line(err)}); give {WHAT}"
                         ) from None
    missing = [key for key in KEYS if key not in found]
    if missing:
        raise UsageError(f"{STREAM}: {path} has no {missing[0]} (it holds: "
                         f"{', '.join(names) or 'nothing'}); give {WHAT}")
    return found


def checked_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) of the file, checked: inputs uint8 or float32 with
    a channel axis for greyscale images, int64 labels; UsageError naming the problem."""
    found = read_arrays(path)
    arrays = []
    for split in ("train", "test"):
        x, y = found[f"x_{split}"], found[f"y_{split}"]
        if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
            raise UsageError(f"{STREAM}: {path}: x_{split} has dtype {x.dtype}; expected uint8 "
                             "(0..255 pixels) or floating point")
        if x.ndim < 2:
            raise UsageError(f"{STREAM}: {path}: x_{split} has shape {x.shape}; expected one "
                             "row per sample")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise UsageError(f"{STREAM}: {path}: y_{split} must be 1-D integer labels, got "
                             f"{y.dtype} of shape {y.shape}")
        if len(x) != len(y):
            raise UsageError(f"{STREAM}: {path}: x_{split} holds {len(x)} samples but y_{split} "
                             f"{len(y)} labels; they must match")
        if x.dtype != np.uint8:
            x = x.astype(np.float32)
        arrays += [x[:, None] if x.ndim == 3 else x, y.astype(np.int64)]
    x_tr, y_tr, x_te, y_te = arrays
    if x_tr.shape[1:] != x_te.shape[1:] or x_tr.dtype != x_te.dtype:
        raise UsageError(f"{STREAM}: {path}: x_test holds {x_te.dtype} samples of shape "
                         f"{x_te.shape[1:]}, x_train {x_tr.dtype} of shape {x_tr.shape[1:]}; "
                         "they must match")
    return x_tr, y_tr, x_te, y_te


def load(path: Optional[str]):
    """The checked arrays of the file at ``path`` (read once while the file is unchanged) and
    its class count."""
    where = require_path(STREAM, path, WHAT, "data.npz")
    arrays = memoized(f"{STREAM}:{where}", [where], lambda: checked_arrays(where))
    return arrays, class_count(STREAM, where, arrays[1], arrays[3]), where


def tensors_shape(path: Optional[str] = None, n_experiences: int = 2,
                  first: Optional[int] = None) -> StreamShape:
    """Class count, input shape, default backbone and memory budget of the file."""
    (x_tr, *_), num_classes, where = load(path)
    shape = tuple(int(d) for d in x_tr.shape[1:])
    return StreamShape(num_classes, shape, default_backbone(STREAM, where, shape),
                       memory_budget(num_classes, int(np.prod(shape)) * x_tr.itemsize))


def build_split_tensors(seed: int, data_root=None, download: bool = False,
                        path: Optional[str] = None, n_experiences: int = 2,
                        first: Optional[int] = None) -> StreamData:
    """The stream of the file at ``path`` for ``seed`` (``data_root`` and ``download`` are
    unused)."""
    arrays, num_classes, where = load(path)
    shape = arrays[0].shape[1:]
    return array_stream(name=STREAM, seed=seed, arrays=arrays, num_classes=num_classes,
                        backbone=default_backbone(STREAM, where, shape),
                        n_experiences=n_experiences, first=first,
                        decode=Scale(255.0) if arrays[0].dtype == np.uint8 else None,
                        options={"path": path, "n_experiences": n_experiences, "first": first})


register_stream(
    StreamSpec(
        name=STREAM,
        build=build_split_tensors,
        summary="your own arrays: a .npz or .pt file with x_train, y_train, x_test, y_test "
                "(option path); any class count and input shape",
        backbone="mlp",
        train_defaults=dict(TRAIN_DEFAULTS),
        options=(path_option(WHAT),
                 n_experiences_option(2, "number of experiences (divides the class count, "
                                         "or the classes after the first experience)"),
                 first_option()),
        shape=tensors_shape,
    )
)
