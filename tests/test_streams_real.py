"""The file-backed streams on tiny data sets that the tests write in the real on-disk formats
(MNIST IDX plain and gzipped, CIFAR-10/100 pickled batches, a Tiny-ImageNet folder tree)."""
from __future__ import annotations

import contextlib
import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.cli import main as cli_main
from benchmark.core.errors import UsageError
from benchmark.core.tensors import TensorLoader
from benchmark.data import class_order, get_stream, split_classes
from benchmark.data.augment import CropFlip, black_fill, random_crop_flip
from benchmark.data.files import resolve_data_root
from benchmark.data.mnist import IDX_FILES, parse_idx
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
                test_per_class: int = 2):
    raw = root / folder / "raw"
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


def one_epoch_record(stream: str, root: Path, **stream_options) -> dict:
    exp = Experiment(streams=[stream], strategies=["finetune"], seeds=[0], device="cpu",
                     train={"epochs": 1},
                     stream_options={stream: stream_options} if stream_options else {})
    (cfg,) = exp.run_configs()
    return execute_run(cfg, ExecOptions(data_root=str(root)))


def check_stream(data, num_classes: int, n_steps: int, input_shape):
    """Shapes, dtypes, disjoint class sets following the seed's order, labels in their step."""
    assert data.num_classes == num_classes and data.n_steps == n_steps
    assert data.input_shape == tuple(input_shape)
    flat = [c for step in data.classes_per_step for c in step]
    assert sorted(flat) == list(range(num_classes))
    for (x, y), (xt, yt), classes in zip(data.train, data.test, data.classes_per_step):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == tuple(input_shape) and len(x) == len(y) > 0
        assert tuple(xt.shape[1:]) == tuple(input_shape) and len(xt) == len(yt) > 0
        assert set(y.tolist()) == set(classes) and set(yt.tolist()) == set(classes)


# ----- data root -------------------------------------------------------------------------------

def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLONEBENCH_DATA", raising=False)
    assert resolve_data_root(None) == tmp_path / "home" / ".cache" / "clonebench" / "data"
    monkeypatch.setenv("CLONEBENCH_DATA", str(tmp_path / "env"))
    assert resolve_data_root(None) == tmp_path / "env"
    assert resolve_data_root(str(tmp_path / "flag")) == tmp_path / "flag"


def test_env_data_root_is_used(monkeypatch, tmp_path):
    write_mnist(tmp_path)
    monkeypatch.setenv("CLONEBENCH_DATA", str(tmp_path))
    assert get_stream("split-mnist").build(seed=0).n_steps == 5


# ----- MNIST / Fashion-MNIST -------------------------------------------------------------------

def test_parse_idx_reads_header_and_values():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(array), 3), array)
    with pytest.raises(ValueError, match="expected 24"):
        parse_idx(idx_bytes(array)[:-1], 3)
    with pytest.raises(ValueError, match="magic"):
        parse_idx(b"\x00\x00\x0d\x03" + idx_bytes(array)[4:], 3)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("stream,folder", [("split-mnist", "MNIST"),
                                           ("split-fashion-mnist", "FashionMNIST")])
def test_mnist_streams_load_idx_files(tmp_path, gz, stream, folder):
    arrays = write_mnist(tmp_path, folder, gz=gz)
    spec = get_stream(stream)
    assert spec.backbone == "cnn"
    data = spec.build(seed=3, data_root=str(tmp_path))
    check_stream(data, 10, 5, (1, MNIST_SIZE, MNIST_SIZE))
    assert data.classes_per_step == split_classes(class_order(10, 3), 5)
    assert data.augment is None
    # the first training image of class c is the first file image labelled c, normalised
    mean, std = (0.1307, 0.3081) if folder == "MNIST" else (0.2860, 0.3530)
    c = data.classes_per_step[0][0]
    x, y = data.train[0]
    first = arrays["train_images"][arrays["train_labels"] == c][0]
    expected = (torch.tensor(first, dtype=torch.float32) / 255 - mean) / std
    assert torch.allclose(x[y == c][0, 0], expected, atol=1e-6)
    assert sum(len(y) for _, y in data.test) == len(arrays["test_labels"])


def test_mnist_one_epoch_run_completes(tmp_path):
    write_mnist(tmp_path, gz=True)
    record = one_epoch_record("split-mnist", tmp_path)
    assert record["status"] == "ok", record["error"]
    assert len(record["accuracy_matrix"]) == 5
    assert record["config"]["backbone"] == "cnn"


def test_mnist_missing_root_folder(tmp_path):
    line = cli_error("split-mnist", tmp_path / "absent", tmp_path)
    assert f"data root {tmp_path / 'absent'} does not exist" in line


def test_mnist_missing_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    line = cli_error("split-mnist", tmp_path, tmp_path)
    assert f"{tmp_path}/MNIST/raw/t10k-labels-idx1-ubyte is missing" in line
    assert "--download" in line


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_truncated_file(tmp_path, gz):
    write_mnist(tmp_path, "FashionMNIST", gz=gz)
    path = tmp_path / "FashionMNIST" / "raw" / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-20])
    line = cli_error("split-fashion-mnist", tmp_path, tmp_path)
    assert f"{path} is truncated or corrupt" in line


def test_mnist_label_count_mismatch_and_missing_class(tmp_path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, dtype=np.uint8)))
    assert "7 labels for 30 images" in cli_error("split-mnist", tmp_path, tmp_path)
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(30, dtype=np.uint8)))
    assert "no sample of class 1" in cli_error("split-mnist", tmp_path, tmp_path)


def test_download_failure_is_one_line_and_present_files_are_not_fetched(tmp_path, monkeypatch):
    import torchvision.datasets
    import torchvision.datasets.utils

    def offline(*args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", offline)
    for stream, what in [("split-mnist", "MNIST"), ("split-cifar10", "cifar-10-python.tar.gz"),
                         ("split-tinyimagenet", "tiny-imagenet-200.zip")]:
        with pytest.raises(UsageError) as err:
            get_stream(stream).build(seed=0, data_root=str(tmp_path / "new"), download=True)
        assert str(err.value) == (f"{stream}: downloading {what} into {tmp_path / 'new'} failed "
                                  "(OSError: [Errno 101] Network is unreachable); check the "
                                  "network or put the files there by hand")
    write_mnist(tmp_path)
    data = get_stream("split-mnist").build(seed=0, data_root=str(tmp_path), download=True)
    assert data.n_steps == 5


def test_mnist_impossible_split_is_a_usage_error(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(UsageError, match="impossible split"):
        get_stream("split-mnist").build(seed=0, data_root=str(tmp_path), n_experiences=3)


# ----- CIFAR-10 / CIFAR-100 --------------------------------------------------------------------

def test_cifar10_loads_pickled_batches(tmp_path):
    x_tr, y_tr, _, y_te = write_cifar10(tmp_path)
    spec = get_stream("split-cifar10")
    assert spec.backbone == "reduced-resnet18"
    data = spec.build(seed=1, data_root=str(tmp_path))
    check_stream(data, 10, 5, (3, 32, 32))
    assert data.classes_per_step == split_classes(class_order(10, 1), 5)
    assert sum(len(y) for _, y in data.train) == len(y_tr) == 50
    assert sum(len(y) for _, y in data.test) == len(y_te) == 20
    # channel-major pixels: image 0 of the file, red channel, normalised
    c = int(y_tr[0])
    step = next(k for k, cls in enumerate(data.classes_per_step) if c in cls)
    x, y = data.train[step]
    red = torch.tensor(x_tr[0, :1024].reshape(32, 32), dtype=torch.float32)
    assert torch.allclose(x[y == c][0, 0], (red / 255 - 0.4914) / 0.2470, atol=1e-5)
    assert isinstance(data.augment, CropFlip) and data.augment.padding == 4
    assert get_stream("split-cifar10").build(seed=1, data_root=str(tmp_path),
                                             augment=False).augment is None


def test_cifar10_one_epoch_run_completes(tmp_path):
    write_cifar10(tmp_path)
    record = one_epoch_record("split-cifar10", tmp_path)
    assert record["status"] == "ok", record["error"]
    assert len(record["accuracy_matrix"]) == 5
    assert record["config"]["backbone"] == "reduced-resnet18"


def test_cifar100_default_and_fifty_plus_splits(tmp_path):
    write_cifar100(tmp_path)
    spec = get_stream("split-cifar100")
    data = spec.build(seed=0, data_root=str(tmp_path))
    check_stream(data, 100, 10, (3, 32, 32))
    assert [len(c) for c in data.classes_per_step] == [10] * 10
    half = spec.build(seed=0, data_root=str(tmp_path), first=50, n_experiences=6)
    check_stream(half, 100, 6, (3, 32, 32))
    assert [len(c) for c in half.classes_per_step] == [50] + [10] * 5
    assert half.classes_per_step[0] == class_order(100, 0)[:50]
    with pytest.raises(UsageError, match="impossible split"):
        spec.build(seed=0, data_root=str(tmp_path), first=50, n_experiences=4)


def test_impossible_split_is_refused_before_reading_data():
    exp = Experiment(streams=["split-cifar100"], strategies=["finetune"], seeds=[0],
                     device="cpu", stream_options={"split-cifar100": {"first": 50,
                                                                      "n_experiences": 4}})
    with pytest.raises(UsageError, match="impossible split"):
        exp.run_configs()
    exp.stream_options = {"split-tinyimagenet": {"n_experiences": 7}}
    exp.streams = ["split-tinyimagenet"]
    with pytest.raises(UsageError, match="impossible split"):
        exp.run_configs()


def test_cifar100_one_epoch_run_completes(tmp_path):
    write_cifar100(tmp_path)
    record = one_epoch_record("split-cifar100", tmp_path, n_experiences=2)
    assert record["status"] == "ok", record["error"]
    assert [len(c) for c in record["classes_per_step"]] == [50, 50]


def test_cifar_missing_batch(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    line = cli_error("split-cifar10", tmp_path, tmp_path)
    assert f"{tmp_path}/cifar-10-batches-py/data_batch_3 is missing" in line
    assert "cifar-10-python.tar.gz" in line and "--download" in line


def test_cifar_missing_folder(tmp_path):
    line = cli_error("split-cifar100", tmp_path, tmp_path)
    assert f"{tmp_path}/cifar-100-python/train is missing" in line


def test_cifar_truncated_and_foreign_files(tmp_path):
    write_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python" / "test"
    path.write_bytes(path.read_bytes()[:500])
    assert f"{path} is truncated or corrupt" in cli_error("split-cifar100", tmp_path, tmp_path)
    path.write_bytes(pickle.dumps({"data": np.zeros((2, 10), dtype=np.uint8),
                                   "fine_labels": [0, 1]}))
    assert "expected (N, 3072) uint8" in cli_error("split-cifar100", tmp_path, tmp_path)


# ----- Tiny-ImageNet ---------------------------------------------------------------------------

def test_tinyimagenet_loads_folder_tree(tmp_path):
    write_tinyimagenet(tmp_path)
    spec = get_stream("split-tinyimagenet")
    assert spec.backbone == "resnet18"
    data = spec.build(seed=0, data_root=str(tmp_path), n_experiences=2)
    check_stream(data, 4, 2, (3, 64, 64))
    assert sum(len(y) for _, y in data.train) == 12
    assert sum(len(y) for _, y in data.test) == 8
    # labels follow the sorted wnids; the greyscale image became 3 equal channels
    grey = (data.train[0][0], data.train[0][1])
    classes = data.classes_per_step[0]
    first = grey[0][grey[1] == classes[0]][0]
    assert torch.allclose((first[0] * 0.2770 + 0.4802), (first[1] * 0.2691 + 0.4481), atol=1e-5)
    assert isinstance(data.augment, CropFlip)
    with pytest.raises(UsageError, match="impossible split"):
        spec.build(seed=0, data_root=str(tmp_path))  # 4 classes do not make 10 experiences


def test_tinyimagenet_one_epoch_run_completes(tmp_path):
    write_tinyimagenet(tmp_path, train_per_class=2, val_per_class=1)
    record = one_epoch_record("split-tinyimagenet", tmp_path, n_experiences=2)
    assert record["status"] == "ok", record["error"]
    assert record["config"]["backbone"] == "resnet18"
    assert len(record["accuracy_matrix"]) == 2


def test_tinyimagenet_errors(tmp_path):
    line = cli_error("split-tinyimagenet", tmp_path, tmp_path)
    assert f"{tmp_path}/tiny-imagenet-200/wnids.txt is missing" in line
    assert "tiny-imagenet-200.zip" in line
    base = write_tinyimagenet(tmp_path)
    notes = base / "val" / "val_annotations.txt"
    text = notes.read_text()
    notes.unlink()
    assert f"{notes} is missing" in cli_error("split-tinyimagenet", tmp_path, tmp_path)
    notes.write_text(text.replace(WNIDS[2], "n00000000", 1))
    assert "line 3 does not name" in cli_error("split-tinyimagenet", tmp_path, tmp_path)
    notes.write_text(text)
    jpeg = base / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_2.JPEG"
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    line = cli_error("split-tinyimagenet", tmp_path, tmp_path)
    assert f"{jpeg} is truncated or corrupt (not a readable image" in line
    (base / "train" / WNIDS[1] / "images").rename(base / "moved")
    line = cli_error("split-tinyimagenet", tmp_path, tmp_path)
    assert f"{base}/train/{WNIDS[1]}/images is missing" in line


def test_rereading_changed_files_is_not_served_from_memo(tmp_path):
    write_mnist(tmp_path)
    first = get_stream("split-mnist").build(seed=0, data_root=str(tmp_path))
    write_mnist(tmp_path, train_per_class=4)
    second = get_stream("split-mnist").build(seed=0, data_root=str(tmp_path))
    assert sum(len(y) for _, y in first.train) == 30
    assert sum(len(y) for _, y in second.train) == 40


# ----- augmentation ----------------------------------------------------------------------------

def reference_crop_flip(x, seed, padding, fill):
    """Per-image reference: the same draws, F.pad-style padding, slicing and torch.flip."""
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    out = []
    for i in range(n):
        padded = torch.stack([torch.nn.functional.pad(x[i, ch], [padding] * 4, value=fill[ch])
                              for ch in range(c)])
        dy, dx = offsets[i].tolist()
        crop = padded[:, dy:dy + h, dx:dx + w]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out)


def test_crop_flip_matches_per_image_reference():
    x = torch.randn(16, 3, 9, 7)
    fill = black_fill((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    got = random_crop_flip(x, torch.Generator().manual_seed(5), padding=4, fill=fill)
    assert got.shape == x.shape and got.dtype == x.dtype
    assert torch.equal(got, reference_crop_flip(x, 5, 4, fill))


def test_crop_flip_is_deterministic_per_generator_state():
    x = torch.randn(32, 3, 32, 32)
    aug = CropFlip(padding=4, fill=(0.0, 0.0, 0.0))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    first, again = aug(x, g1), aug(x, g2)
    assert torch.equal(first, again)
    assert not torch.equal(aug(x, g1), first)  # the generator moved on: new draws
    assert not torch.equal(first, x)


def test_crop_flip_identity_and_pure_flip():
    x = torch.randn(64, 1, 5, 6)
    assert torch.equal(random_crop_flip(x, torch.Generator(), padding=0, flip=False), x)
    flipped = random_crop_flip(x, torch.Generator().manual_seed(1), padding=0)
    same = [torch.equal(a, b) for a, b in zip(flipped, x)]
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(flipped, x)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert any(same) and any(mirrored)


def test_crop_padding_is_black_in_pixel_scale():
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    fill = black_fill(mean, std)
    x = torch.full((32, 3, 8, 8), 3.0)
    out = random_crop_flip(x, torch.Generator().manual_seed(2), padding=4, fill=fill)
    for ch in range(3):
        is_image = out[:, ch] == 3.0
        is_pad = torch.isclose(out[:, ch], torch.tensor(-mean[ch] / std[ch]))
        assert bool((is_image | is_pad).all())
        assert bool(is_pad.any()) and bool(is_image.any())  # some crops reach the padding


def test_cifar_training_batches_are_augmented_test_data_is_not(tmp_path):
    write_cifar10(tmp_path)
    data = get_stream("split-cifar10").build(seed=0, data_root=str(tmp_path))
    train_exp = data.train_experiences()[0]
    x, y = train_exp.x, train_exp.y
    loader = TensorLoader(x, y, 64, shuffle=False, generator=torch.Generator().manual_seed(0),
                          augment=train_exp.augment)
    (xb, yb, _), = list(loader)
    assert xb.shape == x.shape and torch.equal(yb, y)
    assert not torch.equal(xb, x)
    assert all(e.augment is None for e in data.test_experiences())
