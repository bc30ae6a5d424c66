"""Writers of tiny data sets in the real on-disk formats (MNIST IDX plain and gzipped, CIFAR
pickled batches, a Tiny-ImageNet folder tree, the user's .npz / .pt files and image trees), and
helpers the stream tests share."""
from __future__ import annotations

import contextlib
import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from benchmark.cli import main as cli_main
from benchmark.data.mnist import IDX_FILES
from benchmark.run.plan import ExecOptions, Experiment
from benchmark.run.runner import execute_run

MNIST_SIZE = 8  # tiny images: the loaders take the size from the files


# ----- writers of the real formats -------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in IDX format: 0, 0, 0x08, ndim, big-endian int32 dims, values."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def labelled_images(per_class: int, num_classes: int, shape, seed: int):
    """Images whose mean brightness encodes the class, labels 0..num_classes-1 interleaved."""
    rng = np.random.RandomState(seed)
    labels = np.tile(np.arange(num_classes), per_class)
    images = rng.randint(0, 60, size=(len(labels), *shape)) + (labels * 19 % 190).reshape(
        -1, *[1] * len(shape))
    return images.astype(np.uint8), labels


def write_mnist(root: Path, folder: str = "MNIST", gz: bool = False, train_per_class: int = 3,
                test_per_class: int = 2, flat: bool = False):
    """The four IDX files in ``root/folder/raw`` (torchvision's layout), or in ``root`` itself
    with ``flat`` (the layout of Debian's package)."""
    raw = root if flat else root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr = labelled_images(train_per_class, 10, (MNIST_SIZE, MNIST_SIZE), 0)
    x_te, y_te = labelled_images(test_per_class, 10, (MNIST_SIZE, MNIST_SIZE), 1)
    arrays = {"train_images": x_tr, "train_labels": y_tr, "test_images": x_te,
              "test_labels": y_te}
    for key, name in IDX_FILES.items():
        data = idx_bytes(arrays[key])
        if gz:
            (raw / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (raw / name).write_bytes(data)
    return arrays


def cifar_batch(per_class: int, num_classes: int, seed: int, label_key: str, as_bytes=False):
    x, y = labelled_images(per_class, num_classes, (3 * 32 * 32,), seed)
    batch = {"batch_label": "testing batch", "data": x, label_key: [int(v) for v in y]}
    if as_bytes:  # how Python-2 pickles look when read with encoding="bytes"
        batch = {k.encode(): v for k, v in batch.items()}
    return batch, x, y


def write_cifar10(root: Path):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for i in range(1, 6):
        batch, x, y = cifar_batch(1, 10, i, "labels")
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
        xs.append(x)
        ys.append(y)
    batch, x_te, y_te = cifar_batch(2, 10, 9, "labels")
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    return np.concatenate(xs), np.concatenate(ys), x_te, y_te


def write_cifar100(root: Path):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train, x_tr, y_tr = cifar_batch(1, 100, 0, "fine_labels", as_bytes=True)
    train[b"coarse_labels"] = [c // 5 for c in train[b"fine_labels"]]
    test, x_te, y_te = cifar_batch(1, 100, 1, "fine_labels")
    (folder / "train").write_bytes(pickle.dumps(train))
    (folder / "test").write_bytes(pickle.dumps(test))
    return x_tr, y_tr, x_te, y_te


WNIDS = ["n04067472", "n01443537", "n02124075", "n09256479"]  # sorted: classes 0..3


def write_tinyimagenet(root: Path, train_per_class: int = 3, val_per_class: int = 2,
                       grey_first: bool = True):
    from PIL import Image

    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    rng = np.random.RandomState(0)
    for wnid in WNIDS:
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(train_per_class):
            pixels = rng.randint(0, 255, size=(64, 64, 3)).astype(np.uint8)
            img = Image.fromarray(pixels)
            if grey_first and i == 0:
                img = img.convert("L")  # Tiny-ImageNet holds a few greyscale images
            img.save(folder / f"{wnid}_{i}.JPEG", format="JPEG")
    lines = []
    for i in range(val_per_class * len(WNIDS)):
        wnid = WNIDS[i % len(WNIDS)]
        pixels = rng.randint(0, 255, size=(64, 64, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(base / "val" / "images" / f"val_{i}.JPEG", format="JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


# ----- helpers ---------------------------------------------------------------------------------

def run_cli(args):
    """(exit status, stdout, stderr) of ``clonebench ARGS`` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def cli_error(stream: str, root: Path, tmp_path: Path, *extra) -> str:
    """The one error line of ``clonebench run`` on ``stream`` with data root ``root``."""
    code, _, err = run_cli(["run", "--stream", stream, "--strategies", "finetune", "--seeds", "0",
                            "--epochs", "1", "--device", "cpu", "--quiet", "--data-root", root,
                            "--out", tmp_path / "out", *extra])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"clonebench: error: {stream}: ")
    assert "Traceback" not in err
    return lines[0]


def one_epoch_record(stream: str, root, strategy: str = "finetune", **stream_options) -> dict:
    """The record of one run of ``strategy`` (seed 0, 1 epoch, CPU) on ``stream`` read from the
    data root ``root`` (None: the default search)."""
    exp = Experiment(streams=[stream], strategies=[strategy], seeds=[0], device="cpu",
                     train={"epochs": 1},
                     stream_options={stream: stream_options} if stream_options else {})
    (cfg,) = exp.run_configs()
    return execute_run(cfg, ExecOptions(data_root=None if root is None else str(root)))


def check_stream(data, num_classes: int, n_steps: int, input_shape):
    """Shapes, dtypes, disjoint class sets following the seed's order, labels in their step."""
    assert data.num_classes == num_classes and data.n_steps == n_steps
    assert data.input_shape == tuple(input_shape)
    flat = [c for step in data.classes_per_step for c in step]
    assert sorted(flat) == list(range(num_classes))
    for (x, y), (xt, yt), classes in zip(data.train, data.test, data.classes_per_step):
        assert x.dtype == xt.dtype == torch.uint8 and y.dtype == torch.int64  # stored compact
        assert data.inputs(x[:2]).dtype == torch.float32  # model inputs
        assert tuple(x.shape[1:]) == tuple(input_shape) and len(x) == len(y) > 0
        assert tuple(xt.shape[1:]) == tuple(input_shape) and len(xt) == len(yt) > 0
        assert set(y.tolist()) == set(classes) and set(yt.tolist()) == set(classes)


# ----- the user's own data ---------------------------------------------------------------------

def own_arrays(num_classes: int = 4, train_per_class: int = 3, test_per_class: int = 2,
               shape=(6,), dtype=np.float32, seed: int = 0) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test: inputs whose level encodes the class."""
    arrays = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        x, y = labelled_images(per_class, num_classes, shape, seed + (split == "test"))
        arrays[f"x_{split}"] = x if dtype == np.uint8 else x.astype(dtype) / 255
        arrays[f"y_{split}"] = y.astype(np.int64)
    return arrays


def write_npz(path: Path, arrays: dict) -> Path:
    np.savez(path, **arrays)
    return path


def write_pt(path: Path, arrays: dict) -> Path:
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}, path)
    return path


def write_image_tree(root: Path, classes=("cat", "dog", "owl", "yak"), train_per_class: int = 3,
                     test_per_class: int = 2, size: int = 10) -> Path:
    """``root/train/<class>/*`` and ``root/test/<class>/*``: PNGs and JPEGs of mixed sizes
    and modes (RGB, greyscale, palette)."""
    from PIL import Image

    rng = np.random.RandomState(0)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.randint(0, 60, size=(size + i, size, 3)) + label * 60
                img = Image.fromarray(pixels.astype(np.uint8))
                if i == 1:
                    img.convert("L").save(folder / f"{i}.jpg", format="JPEG")
                elif i == 2:
                    img.convert("P").save(folder / f"{i}.PNG", format="PNG")
                else:
                    img.save(folder / f"{i}.png", format="PNG")
    return root


def experiment_file(config: Path, stream: str, **options) -> Path:
    """An experiment file running ``stream`` with the given stream options."""
    lines = [f'stream = "{stream}"', f"[stream_options.{stream}]"]
    for key, value in options.items():
        text = f'"{value}"' if isinstance(value, (str, Path)) else str(value).lower() \
            if isinstance(value, bool) else str(value)
        lines.append(f"{key} = {text}")
    config.write_text("\n".join(lines) + "\n")
    return config


def own_cli_error(stream: str, tmp_path: Path, **options) -> str:
    """The one error line of ``clonebench run`` on ``stream`` with these options; nothing is
    written."""
    config = experiment_file(tmp_path / "exp.toml", stream, **options)
    out = tmp_path / "out"
    code, _, err = run_cli(["run", "--config", config, "--strategies", "finetune", "--seeds", "0",
                            "--epochs", "1", "--device", "cpu", "--quiet", "--out", out])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"clonebench: error: {stream}: ") or \
        lines[0].startswith("clonebench: error: impossible split"), lines[0]
    assert not out.exists()
    return lines[0]
