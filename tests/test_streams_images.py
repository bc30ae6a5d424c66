"""The image streams read from a data root (``split-cifar10``, ``split-cifar100``,
``split-tinyimagenet``) on tiny files the tests write in the real formats, and the device
augmentation (random crop and flip)."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from stream_files import (
    WNIDS,
    check_stream,
    cli_error,
    one_epoch_record,
    write_cifar10,
    write_cifar100,
    write_tinyimagenet,
)

from benchmark.core.errors import UsageError
from benchmark.core.tensors import TensorLoader
from benchmark.data import class_order, get_stream, split_classes
from benchmark.data.augment import CropFlip, black_fill, random_crop_flip
from benchmark.run.plan import Experiment

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
    red = torch.from_numpy(x_tr[0, :1024].reshape(32, 32))
    assert torch.equal(x[y == c][0, 0], red)  # stored: the file's bytes
    decoded = data.inputs(x[y == c])[0, 0]
    assert torch.allclose(decoded, (red.float() / 255 - 0.4914) / 0.2470, atol=1e-5)
    assert data.sample_bytes == 3 * 32 * 32 + 8
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
    assert torch.equal(first[0], first[1]) and torch.equal(first[1], first[2])
    assert isinstance(data.augment, CropFlip)
    with pytest.raises(UsageError, match="impossible split"):
        spec.build(seed=0, data_root=str(tmp_path))  # 4 classes do not make 10 experiences


def test_an_unchanged_tinyimagenet_tree_is_not_walked_again_and_changes_are_noticed(
        tmp_path, monkeypatch):
    from benchmark.data import tinyimagenet

    base = write_tinyimagenet(tmp_path)
    walks = []
    walk = tinyimagenet.train_files
    monkeypatch.setattr(tinyimagenet, "train_files", lambda *a: walks.append(1) or walk(*a))
    first, num_classes = tinyimagenet.load(str(tmp_path), False)
    again, _ = tinyimagenet.load(str(tmp_path), False)
    assert again is first and num_classes == len(WNIDS) and walks == [1]
    folder = base / "train" / WNIDS[0] / "images"
    (folder / "extra.JPEG").write_bytes((folder / f"{WNIDS[0]}_1.JPEG").read_bytes())
    added, _ = tinyimagenet.load(str(tmp_path), False)
    assert walks == [1, 1] and len(added[1]) == len(first[1]) + 1
    image = base / "val" / "images" / "val_0.JPEG"
    image.write_bytes((base / "val" / "images" / "val_1.JPEG").read_bytes())
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    rewritten, _ = tinyimagenet.load(str(tmp_path), False)
    assert walks == [1, 1, 1] and not np.array_equal(rewritten[2], added[2])
    assert tinyimagenet.load(str(tmp_path), False)[0] is rewritten


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
    assert x.dtype == torch.uint8
    loader = TensorLoader(x, y, 64, shuffle=False, generator=torch.Generator().manual_seed(0),
                          augment=train_exp.augment, decode=train_exp.decode)
    (xb, yb, _), = list(loader)
    assert xb.shape == x.shape and xb.dtype == torch.float32 and torch.equal(yb, y)
    assert not torch.equal(xb, data.inputs(x))
    # decoded first, then augmented: the crop's padding is black in pixel scale
    padded = xb[:, 0] == black_fill(data.decode.mean, data.decode.std)[0]
    assert bool(padded.any())
    assert all(e.augment is None for e in data.test_experiences())
