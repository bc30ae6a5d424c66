"""The data root and the IDX streams (``split-mnist``, ``split-fashion-mnist``) on tiny files the
tests write, including Fashion-MNIST's search order (data root, then the system folder of
Debian's package; the tests point that folder at temporary ones, so they neither need nor see
the package)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from stream_files import (
    MNIST_SIZE,
    check_stream,
    cli_error,
    idx_bytes,
    one_epoch_record,
    run_cli,
    write_cifar10,
    write_mnist,
)

from benchmark.core.errors import UsageError
from benchmark.data import class_order, get_stream, mnist, split_classes
from benchmark.data.files import resolve_data_root
from benchmark.data.mnist import parse_idx

FASHION = "split-fashion-mnist"


@pytest.fixture(autouse=True)
def system_folder(tmp_path, monkeypatch):
    """Fashion-MNIST's system folder, moved to an empty temporary path for every test."""
    folder = tmp_path / "system" / "fashion-mnist"
    monkeypatch.setitem(mnist.SYSTEM_FOLDERS, FASHION, folder)
    return folder


def train_size(data) -> int:
    return sum(len(y) for _, y in data.train)


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
@pytest.mark.parametrize("stream,folder", [("split-mnist", "MNIST"), (FASHION, "FashionMNIST")])
def test_mnist_streams_load_idx_files(tmp_path, gz, stream, folder):
    arrays = write_mnist(tmp_path, folder, gz=gz)
    spec = get_stream(stream)
    assert spec.backbone == "cnn"
    data = spec.build(seed=3, data_root=str(tmp_path))
    check_stream(data, 10, 5, (1, MNIST_SIZE, MNIST_SIZE))
    assert data.classes_per_step == split_classes(class_order(10, 3), 5)
    assert data.augment is None
    # the first training image of class c is the first file image labelled c: stored as the
    # file's bytes, decoded to the normalised image
    mean, std = (0.1307, 0.3081) if folder == "MNIST" else (0.2860, 0.3530)
    c = data.classes_per_step[0][0]
    x, y = data.train[0]
    first = arrays["train_images"][arrays["train_labels"] == c][0]
    assert torch.equal(x[y == c][0, 0], torch.from_numpy(first))
    expected = (torch.tensor(first, dtype=torch.float32) / 255 - mean) / std
    assert torch.allclose(data.inputs(x[y == c])[0, 0], expected, atol=1e-6)
    assert sum(len(y) for _, y in data.test) == len(arrays["test_labels"])
    assert data.sample_bytes == MNIST_SIZE * MNIST_SIZE + 8  # uint8 pixels + an int64 label


def test_mnist_one_epoch_run_completes(tmp_path):
    write_mnist(tmp_path, gz=True)
    record = one_epoch_record("split-mnist", tmp_path)
    assert record["status"] == "ok", record["error"]
    assert len(record["accuracy_matrix"]) == 5
    assert record["config"]["backbone"] == "cnn"
    assert record["sample_bytes"] == MNIST_SIZE * MNIST_SIZE + 8


def test_mnist_missing_root_folder(tmp_path):
    line = cli_error("split-mnist", tmp_path / "absent", tmp_path)
    assert f"data root {tmp_path / 'absent'} does not exist" in line


def test_mnist_missing_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    line = cli_error("split-mnist", tmp_path, tmp_path)
    assert f"{tmp_path}/MNIST/raw/t10k-labels-idx1-ubyte is missing" in line
    assert "--download" in line and "apt-get" not in line  # no package ships MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_truncated_file(tmp_path, gz):
    write_mnist(tmp_path, "FashionMNIST", gz=gz)
    path = tmp_path / "FashionMNIST" / "raw" / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-20])
    line = cli_error(FASHION, tmp_path, tmp_path)
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
    write_cifar10(tmp_path)
    assert get_stream("split-cifar10").build(seed=0, data_root=str(tmp_path),
                                             download=True).n_steps == 5


def test_mnist_impossible_split_is_a_usage_error(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(UsageError, match="impossible split"):
        get_stream("split-mnist").build(seed=0, data_root=str(tmp_path), n_experiences=3)


def test_rereading_changed_files_is_not_served_from_memo(tmp_path):
    write_mnist(tmp_path)
    first = get_stream("split-mnist").build(seed=0, data_root=str(tmp_path))
    write_mnist(tmp_path, train_per_class=4)
    second = get_stream("split-mnist").build(seed=0, data_root=str(tmp_path))
    assert train_size(first) == 30
    assert train_size(second) == 40


# ----- Fashion-MNIST's search order ------------------------------------------------------------

def test_fashion_mnist_falls_back_to_the_system_folder(tmp_path, monkeypatch, system_folder):
    """No data flags, no files under the default data root: the package's flat folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLONEBENCH_DATA", raising=False)
    write_mnist(system_folder, gz=True, train_per_class=2, flat=True)
    data = get_stream(FASHION).build(seed=0)
    assert train_size(data) == 20
    record = one_epoch_record(FASHION, None)
    assert record["status"] == "ok", record["error"]


def test_fashion_mnist_search_order(tmp_path, monkeypatch, system_folder):
    """--data-root, else $CLONEBENCH_DATA, else the cache, and the system folder last; each
    location holds a different number of images per class, so the one read is known."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cache = tmp_path / "home" / ".cache" / "clonebench" / "data"
    write_mnist(system_folder, gz=True, train_per_class=2, flat=True)
    write_mnist(cache, "FashionMNIST", train_per_class=3)
    write_mnist(tmp_path / "env", "FashionMNIST", gz=True, train_per_class=4)
    write_mnist(tmp_path / "flag", "FashionMNIST", train_per_class=5)
    monkeypatch.setenv("CLONEBENCH_DATA", str(tmp_path / "env"))
    build = get_stream(FASHION).build
    assert train_size(build(seed=0, data_root=str(tmp_path / "flag"))) == 50
    assert train_size(build(seed=0)) == 40
    monkeypatch.delenv("CLONEBENCH_DATA")
    assert train_size(build(seed=0)) == 30
    # a data root without the files (existing or not) falls through to the system folder
    assert train_size(build(seed=0, data_root=str(tmp_path / "empty"))) == 20
    (tmp_path / "empty").mkdir()
    assert train_size(build(seed=0, data_root=str(tmp_path / "empty"))) == 20


def test_fashion_mnist_partial_copy_is_not_completed_from_the_system(tmp_path, system_folder):
    write_mnist(system_folder, gz=True, flat=True)
    write_mnist(tmp_path, "FashionMNIST")
    missing = tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    missing.unlink()
    line = cli_error(FASHION, tmp_path, tmp_path)
    assert f"{missing} is missing" in line


def test_fashion_mnist_missing_everywhere_names_the_package_and_download(tmp_path):
    line = cli_error(FASHION, tmp_path / "absent", tmp_path)
    assert "apt-get install dataset-fashion-mnist" in line and "--download" in line
    assert f"data root {tmp_path / 'absent'} does not exist" in line
    line = cli_error(FASHION, tmp_path, tmp_path)
    assert f"{tmp_path}/FashionMNIST/raw/train-images-idx3-ubyte is missing" in line
    assert "apt-get install dataset-fashion-mnist" in line and "--download" in line


def test_fashion_mnist_corrupt_system_file_is_named(tmp_path, system_folder):
    write_mnist(system_folder, gz=True, flat=True)
    path = system_folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:10])
    assert f"{path} is truncated or corrupt" in cli_error(FASHION, tmp_path, tmp_path)


REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_FASHION / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(mnist.SYSTEM_FOLDERS, FASHION, REAL_FASHION)
    data = get_stream(FASHION).build(seed=0, data_root=str(tmp_path / "empty"))
    check_stream(data, 10, 5, (1, 28, 28))
    assert train_size(data) == 60000 and sum(len(y) for _, y in data.test) == 10000
    assert data.sample_bytes == 784 + 8
    counts = torch.bincount(torch.cat([y for _, y in data.train]), minlength=10)
    assert counts.tolist() == [6000] * 10


# ----- make data -------------------------------------------------------------------------------

def make_data(tmp_path, folder, apt_get) -> tuple[int, str]:
    """(exit status, output) of ``make data`` with its folder and apt-get replaced."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(["make", "-s", "-C", str(repo), "data", f"FASHION_DIR={folder}",
                           f"APT_GET={apt_get}"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "FAKE_DIR": str(folder)})
    return done.returncode, done.stdout + done.stderr


def test_make_data_installs_once_and_says_what_to_do_without_apt(tmp_path):
    folder = tmp_path / "fashion-mnist"
    code, out = make_data(tmp_path, folder, tmp_path / "no-apt-get")
    assert code == 0 and "no apt-get here" in out and "--download" in out
    log = tmp_path / "apt.log"
    fake = tmp_path / "apt-get"  # stands in for apt-get: creates the package's four files
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\nmkdir -p "$FAKE_DIR"\n'
                    'for f in train-images-idx3-ubyte train-labels-idx1-ubyte '
                    't10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do '
                    ': > "$FAKE_DIR/$f.gz"; done\n')
    fake.chmod(0o755)
    if os.geteuid() != 0:
        pytest.skip("the install branch needs root (or sudo)")
    code, out = make_data(tmp_path, folder, fake)
    assert code == 0 and f"installed in {folder}" in out
    assert log.read_text() == "install -y dataset-fashion-mnist\n"
    code, out = make_data(tmp_path, folder, fake)
    assert code == 0 and f"already in {folder}" in out
    assert log.read_text() == "install -y dataset-fashion-mnist\n"  # idempotent


def test_train_per_class_keeps_a_seeded_draw_of_each_class(tmp_path):
    arrays = write_mnist(tmp_path, "FashionMNIST", train_per_class=5)
    spec = get_stream("split-fashion-mnist")
    data = spec.build(seed=2, data_root=str(tmp_path), train_per_class=3)
    for (x, y), classes in zip(data.train, data.classes_per_step):
        assert all(int((y == c).sum()) == 3 for c in classes)
        for c in classes:  # the kept images are some of the file's images of that class
            files = arrays["train_images"][arrays["train_labels"] == c]
            kept = x[y == c][:, 0].numpy()
            assert all(any((img == f).all() for f in files) for img in kept)
    again = spec.build(seed=2, data_root=str(tmp_path), train_per_class=3)
    other = spec.build(seed=5, data_root=str(tmp_path), train_per_class=3)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(data.train, again.train))
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(data.train, other.train)
               if a[0].shape == b[0].shape)
    assert sum(len(y) for _, y in data.test) == len(arrays["test_labels"])  # test set whole
    whole = spec.build(seed=2, data_root=str(tmp_path), train_per_class=None)
    assert sum(len(y) for _, y in whole.train) == len(arrays["train_labels"])


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_bad_train_per_class_is_one_line_exit_2(tmp_path, value):
    write_mnist(tmp_path, "FashionMNIST")
    config = tmp_path / "exp.toml"
    config.write_text('stream = "split-fashion-mnist"\nstrategies = ["finetune"]\nseeds = [0]\n'
                      f'[stream_options.split-fashion-mnist]\ntrain_per_class = "{value}"\n')
    out = tmp_path / "out"
    code, _, err = run_cli(["run", "--config", config, "--data-root", tmp_path, "--out", out,
                            "--quiet"])
    assert code == 2 and err.count("\n") == 1 and "train_per_class" in err, err
    assert not out.exists()
