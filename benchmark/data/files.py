"""Shared helpers of the streams that read data sets from a local data root.

- The *data root* is ``--data-root`` if given, else ``$CLONEBENCH_DATA``, else
  ``~/.cache/clonebench/data`` (``resolve_data_root``). Nothing is downloaded unless the user
  asks for it (``--download``); files that are missing, incomplete or corrupt raise a one-line
  ``UsageError`` naming the file and what to put where.
- Loaders return the whole data set as ``uint8`` arrays (N, C, H, W) plus ``int64`` labels, kept
  in a small in-process memo keyed by the files' paths, sizes and modification times, so a grid
  of runs in one process reads each data set once (``memoized``); a folder tree of images is
  checked against its memo entry before it is walked again (``memoized_tree``).
- ``image_stream`` turns those arrays into a ``StreamData``: class order from the seed, the
  data set's own train/test split, inputs kept as uint8 (N, C, H, W) with ``decode`` =
  ``Normalise(mean, std)``, which makes float32 model inputs ((x / 255 - mean) / std, per
  channel) batch by batch on the batch's device.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeVar

import numpy as np
import torch

from benchmark.core.errors import UsageError, one_line
from benchmark.data.base import StreamData, class_order, split_classes

DATA_ENV = "CLONEBENCH_DATA"
DEFAULT_DATA_ROOT = "~/.cache/clonebench/data"
ROOT_HINT = f"--data-root, ${DATA_ENV} or {DEFAULT_DATA_ROOT}"

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
T = TypeVar("T")


def resolve_data_root(data_root: Optional[str]) -> Path:
    """The data root: ``data_root`` if given, else ``$CLONEBENCH_DATA``, else the default."""
    chosen = data_root or os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT
    return Path(os.path.expanduser(str(chosen)))


def require_root(stream: str, root: Path, fix: str) -> None:
    """UsageError unless the data root is an existing folder."""
    if not root.is_dir():
        raise UsageError(f"{stream}: data root {root} does not exist ({ROOT_HINT}); "
                         f"create it and {fix}")


def missing_file_error(stream: str, path: Path, fix: str) -> UsageError:
    return UsageError(f"{stream}: {path} is missing; {fix}")


def corrupt_file_error(stream: str, path: Path, problem: str, fix: str) -> UsageError:
    return UsageError(f"{stream}: {path} is truncated or corrupt ({problem}); {fix}")


def download_with(stream: str, root: Path, what: str, fetch: Callable[[], None]) -> None:
    """Runs ``fetch`` (a torchvision download into ``root``); a failure becomes one line."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fetch()
    except Exception as err:  # network, disk, checksum: all are the user's to fix
        raise UsageError(f"{stream}: downloading {what} into {root} failed ({one_line(err)}); "
                         "check the network or put the files there by hand") from None


_MEMO: dict[str, tuple[tuple, Arrays]] = {}


def file_signature(paths: Sequence[Path]) -> tuple:
    """What identifies the files' contents cheaply: path, size and mtime of each."""
    sig = []
    for path in paths:
        st = path.stat()
        sig.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(sig)


def memoized(name: str, paths: Sequence[Path], load: Callable[[], Arrays]) -> Arrays:
    """``load()``'s arrays, reused while ``paths`` are unchanged (one entry per data set)."""
    sig = file_signature(paths)
    hit = _MEMO.get(name)
    if hit is not None and hit[0] == sig:
        return hit[1]
    arrays = load()
    _MEMO[name] = (sig, arrays)
    return arrays


_TREES: dict[str, tuple[tuple[Path, ...], tuple[Path, ...], tuple, Any]] = {}


def folder_entries(folder: Path) -> tuple[tuple[str, bool, bool], ...]:
    """The entries of ``folder``: (name, whether it is a folder, whether it is a file; links
    followed), sorted by name."""
    with os.scandir(folder) as entries:
        return tuple(sorted((e.name, e.is_dir(), e.is_file()) for e in entries))


def tree_signature(folders: Sequence[Path], files: Sequence[Path]) -> Optional[tuple]:
    """What identifies a walk of a folder tree and what it read: the entries of every folder
    listed (``folder_entries``) and the path, size and mtime of every file read
    (``file_signature``); None when one of them is gone."""
    try:
        return tuple(folder_entries(f) for f in folders), file_signature(files)
    except OSError:
        return None


def memoized_tree(name: str, walk: Callable[[], tuple[Sequence[Path], Sequence[Path], Any]],
                  load: Callable[[Any], T]) -> T:
    """``load(found)``'s value for a folder tree, reused while the tree is unchanged, which is
    checked before the tree is walked again (one entry per ``name``; the name includes the
    tree's root).

    ``walk()`` lists the tree (raising ``UsageError`` for what is missing or wrong) and returns
    ``(folders, files, found)``: the folders whose entries it listed, the files it read or
    found (a class list, the images) and what ``load`` reads. The entry keeps the folders, the
    files and their ``tree_signature``; a later call recomputes that signature from them first
    and reuses the value when it is equal, without walking; otherwise it walks and loads anew.

    This notices every change that walking first and then comparing the files' sizes and
    mtimes (``memoized``) notices: a walk's result depends only on the entries of the folders
    it lists, compared in full (names and kinds), and on the contents of the files it reads,
    compared by size and mtime as every image is. It is cheaper: one ``scandir`` per folder and
    one ``stat`` per file, no listing of paths, sorting or parsing."""
    hit = _TREES.get(name)
    if hit is not None:
        folders, files, signature, value = hit
        if tree_signature(folders, files) == signature:
            return value
    folders, files, found = walk()
    folders, files = tuple(folders), tuple(files)
    signature = tree_signature(folders, files)
    value = load(found)
    _TREES[name] = (folders, files, signature, value)
    return value


def check_labels(stream: str, labels: np.ndarray, num_classes: int, path: Path, fix: str) -> None:
    """UsageError unless every label lies in 0..num_classes-1 and every class occurs."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise corrupt_file_error(stream, path, f"labels outside 0..{num_classes - 1}", fix)
    counts = np.bincount(labels, minlength=num_classes) if labels.size else np.zeros(num_classes)
    absent = [c for c in range(num_classes) if counts[c] == 0]
    if absent:
        raise UsageError(f"{stream}: {path} holds no sample of class {absent[0]} "
                         f"({len(absent)} of {num_classes} classes absent): the data set is "
                         f"incomplete; {fix}")


def channel_stats(mean: Sequence[float], std: Sequence[float], device=None):
    """(mean, std) as float32 tensors of shape (1, C, 1, 1) on ``device``."""
    c = len(mean)
    return (torch.tensor(mean, dtype=torch.float32, device=device).view(1, c, 1, 1),
            torch.tensor(std, dtype=torch.float32, device=device).view(1, c, 1, 1))


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images (N, C, H, W) as float32 ((x / 255 - mean) / std), per channel, on ``x``'s
    device (a new tensor; ``x`` is left as it is)."""
    m, s = channel_stats(mean, std, x.device)
    return x.to(torch.float32, copy=True).div_(255.0).sub_(m).div_(s)


@dataclass(frozen=True)
class Normalise:
    """``StreamData.decode`` of uint8 images: ``normalise`` with the data set's per-channel
    ``mean`` and ``std`` (in 0..1 pixel units); the statistics' tensors are made once per
    device."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    _stats: dict = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        stats = self._stats.get(x.device)
        if stats is None:
            stats = self._stats[x.device] = channel_stats(self.mean, self.std, x.device)
        m, s = stats
        return x.to(torch.float32, copy=True).div_(255.0).sub_(m).div_(s)


@dataclass(frozen=True)
class Scale:
    """``StreamData.decode`` of stored integer inputs: float32 ``x / divisor`` (e.g. the
    digits' 0..16 pixels or 0..255 bytes to 0..1)."""

    divisor: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32) / self.divisor


def split_arrays(x: np.ndarray, y: np.ndarray, classes_per_step: list[list[int]]):
    """One (x, y) tensor pair per experience, ``x`` at its stored dtype, int64 labels, original
    sample order kept within each."""
    out = []
    for classes in classes_per_step:
        idx = np.flatnonzero(np.isin(y, classes))
        out.append((torch.from_numpy(np.ascontiguousarray(x[idx])),
                    torch.from_numpy(y[idx].astype(np.int64))))
    return out


def per_class_cap(y: np.ndarray, cap: Optional[int], seed: int) -> np.ndarray:
    """Sorted indices keeping at most ``cap`` samples of each class of ``y``: for class c, the
    first ``cap`` of a permutation of its samples drawn from NumPy's ``default_rng([seed, c,
    CAP_DRAW])``; all indices when ``cap`` is None."""
    if cap is None:
        return np.arange(len(y))
    kept = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        order = np.random.default_rng([int(seed), int(c), CAP_DRAW]).permutation(len(members))
        kept.append(members[np.sort(order[:cap])])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


CAP_DRAW = 11  # the purpose of the per-class cap's draws


def array_stream(*, name: str, seed: int, arrays: Arrays, num_classes: int, backbone: str,
                 n_experiences: int, first: Optional[int] = None, decode=None, augment=None,
                 options: Optional[dict] = None, train_per_class: Optional[int] = None
                 ) -> StreamData:
    """A class-incremental stream over arrays ``(x_train, y_train, x_test, y_test)`` (inputs
    kept at their dtype, decoded batch by batch by ``decode``): class order from the seed,
    the arrays' own train/test split, at most ``train_per_class`` training samples per class
    (``per_class_cap``)."""
    x_tr, y_tr, x_te, y_te = arrays
    if train_per_class is not None:
        kept = per_class_cap(y_tr, train_per_class, seed)
        x_tr, y_tr = x_tr[kept], y_tr[kept]
    classes = split_classes(class_order(num_classes, seed), n_experiences, first)
    return StreamData(
        name=name,
        seed=seed,
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in x_tr.shape[1:]),
        backbone=backbone,
        classes_per_step=classes,
        train=split_arrays(x_tr, y_tr, classes),
        test=split_arrays(x_te, y_te, classes),
        options=dict(options or {}),
        augment=augment,
        decode=decode,
    )


def image_stream(*, mean: Sequence[float], std: Sequence[float], **kwargs) -> StreamData:
    """``array_stream`` over uint8 images, stored as uint8 and decoded by
    ``Normalise(mean, std)``."""
    return array_stream(decode=Normalise(tuple(mean), tuple(std)), **kwargs)


def check_bool(stream: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"stream option {stream}.{name} must be true or false, got {value!r}")
    return value
