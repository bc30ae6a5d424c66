"""The streams over the user's own data: ``split-tensors`` (.npz / .pt) and ``split-folder``
(an image tree), on tiny files the tests write; every registered strategy runs on both, and each
bad input stops the command with one line, exit status 2, before anything is written."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from stream_files import (
    experiment_file,
    one_epoch_record,
    own_arrays,
    own_cli_error,
    run_cli,
    write_image_tree,
    write_npz,
    write_pt,
)

from benchmark.core.errors import UsageError
from benchmark.data import get_stream, resolve_stream_options
from benchmark.data.files import Scale
from benchmark.run.plan import Experiment
from strategies import STRATEGIES

TENSORS, FOLDER = "split-tensors", "split-folder"


@pytest.fixture
def feature_file(tmp_path):
    return write_npz(tmp_path / "features.npz", own_arrays())


@pytest.fixture
def image_tree(tmp_path):
    return write_image_tree(tmp_path / "images")


# ----- split-tensors ---------------------------------------------------------------------------

def test_npz_features_stay_float_and_default_to_the_mlp(feature_file):
    arrays = own_arrays()
    data = get_stream(TENSORS).build(seed=1, path=str(feature_file))
    assert data.num_classes == 4 and data.input_shape == (6,) and data.backbone == "mlp"
    assert data.decode is None and data.n_steps == 2
    for (x, y), classes in zip(data.train, data.classes_per_step):
        assert x.dtype == torch.float32 and set(y.tolist()) == set(classes)
        first = arrays["x_train"][arrays["y_train"] == classes[0]][0]
        assert torch.equal(x[y == classes[0]][0], torch.from_numpy(first))
    assert sum(len(y) for _, y in data.test) == 8
    assert data.sample_bytes == 6 * 4 + 8


@pytest.mark.parametrize("writer", [write_npz, write_pt])
def test_uint8_images_stay_uint8_and_default_to_the_cnn(tmp_path, writer):
    arrays = own_arrays(num_classes=6, shape=(3, 5, 5), dtype=np.uint8)
    path = writer(tmp_path / f"images{'.npz' if writer is write_npz else '.pt'}", arrays)
    data = get_stream(TENSORS).build(seed=0, path=str(path), n_experiences=3)
    assert data.input_shape == (3, 5, 5) and data.backbone == "cnn" and data.num_classes == 6
    assert data.decode == Scale(255.0)
    x, y = data.train[0]
    assert x.dtype == torch.uint8
    assert torch.equal(data.inputs(x), x.float() / 255)
    assert data.sample_bytes == 75 + 8


def test_greyscale_images_get_a_channel_axis_and_first_splits_unevenly(tmp_path):
    path = write_npz(tmp_path / "grey.npz", own_arrays(num_classes=6, shape=(4, 4),
                                                        dtype=np.uint8))
    spec = get_stream(TENSORS)
    options = resolve_stream_options(spec, {"path": str(path), "first": 2, "n_experiences": 3})
    shaped = spec.for_options(options)
    assert (shaped.num_classes, shaped.input_shape, shaped.backbone) == (6, (1, 4, 4), "cnn")
    assert shaped.memory_bytes == 20 * 6 * (16 + 8)  # 20 stored samples per class
    data = spec.build(seed=0, **options)
    assert [len(c) for c in data.classes_per_step] == [2, 2, 2]
    assert data.train[0][0].shape[1:] == (1, 4, 4)


def test_backbone_is_checked_against_the_files_shape_when_planning(feature_file, tmp_path):
    exp = Experiment(streams=[TENSORS], strategies=["finetune"], seeds=[0], device="cpu",
                     stream_options={TENSORS: {"path": str(feature_file)}})
    (cfg,) = exp.run_configs()
    assert cfg.backbone == "mlp"
    exp.backbones = {TENSORS: "cnn"}
    with pytest.raises(UsageError, match="does not take split-tensors's inputs of shape"):
        exp.run_configs()


# ----- split-folder ----------------------------------------------------------------------------

def test_image_tree_is_resized_and_stored_uint8(image_tree):
    data = get_stream(FOLDER).build(seed=0, path=str(image_tree), size=8)
    assert data.num_classes == 4 and data.input_shape == (3, 8, 8) and data.backbone == "cnn"
    assert sum(len(y) for _, y in data.train) == 12 and sum(len(y) for _, y in data.test) == 8
    x, y = data.train[0]
    assert x.dtype == torch.uint8 and data.decode == Scale(255.0)
    # class c is the c-th folder name in sorted order: its level is c * 60 + noise (0..59)
    for (x, y), _ in zip(data.train, data.classes_per_step):
        for c in y.unique().tolist():
            level = x[y == c].float().mean().item()
            assert c * 60 <= level < c * 60 + 60
    grey = get_stream(FOLDER).build(seed=0, path=str(image_tree), size=6, grayscale=True)
    assert grey.input_shape == (1, 6, 6) and grey.train[0][0].shape[1:] == (1, 6, 6)


def test_an_unchanged_image_tree_is_not_walked_again_and_changes_are_noticed(image_tree,
                                                                             monkeypatch):
    from benchmark.data import imagefolder

    walks = []
    walk = imagefolder.image_files
    monkeypatch.setattr(imagefolder, "image_files", lambda *a: walks.append(1) or walk(*a))
    first, classes = imagefolder.load(str(image_tree), 8, False)
    again, _ = imagefolder.load(str(image_tree), 8, False)
    assert again is first and walks == [1]
    # an image rewritten in place (its mtime moved), one added, one removed, a class added
    image = image_tree / "train" / "dog" / "0.png"
    image.write_bytes((image_tree / "train" / "yak" / "0.png").read_bytes())
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    rewritten, _ = imagefolder.load(str(image_tree), 8, False)
    assert walks == [1, 1] and not np.array_equal(rewritten[0], first[0])
    (image_tree / "test" / "cat" / "9.png").write_bytes(image.read_bytes())
    assert len(imagefolder.load(str(image_tree), 8, False)[0][3]) == len(first[3]) + 1
    (image_tree / "test" / "cat" / "9.png").unlink()
    (image_tree / "train" / "owl" / "0.png").unlink()
    assert len(imagefolder.load(str(image_tree), 8, False)[0][1]) == len(first[1]) - 1
    for split in ("train", "test"):
        (image_tree / split / "emu").mkdir()
        (image_tree / split / "emu" / "0.png").write_bytes(image.read_bytes())
    assert imagefolder.load(str(image_tree), 8, False)[1] == ["cat", "dog", "emu", "owl", "yak"]
    assert len(walks) == 5


# ----- every strategy on both --------------------------------------------------------------------

@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_runs_on_split_tensors(strategy, feature_file):
    record = one_epoch_record(TENSORS, None, strategy=strategy, path=str(feature_file))
    assert record["status"] == "ok", record["error"]
    assert len(record["accuracy_matrix"]) == 2 and record["config"]["backbone"] == "mlp"


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_runs_on_split_folder(strategy, image_tree):
    record = one_epoch_record(FOLDER, None, strategy=strategy, path=str(image_tree), size=8)
    assert record["status"] == "ok", record["error"]
    assert len(record["accuracy_matrix"]) == 2 and record["config"]["backbone"] == "cnn"


def test_cli_run_on_own_data_writes_records(feature_file, tmp_path):
    config = experiment_file(tmp_path / "exp.toml", TENSORS, path=feature_file)
    result = run_cli(["run", "--config", config, "--strategies", "finetune", "--seeds", "0",
                      "--epochs", "1", "--device", "cpu", "--quiet", "--out", tmp_path / "out"])
    assert result[0] == 0, result[2]
    assert len(list((tmp_path / "out" / "runs").glob("*.json"))) == 1


# ----- errors: one line, exit 2, nothing written -------------------------------------------------

def test_missing_and_absent_path(tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text(f'stream = "{TENSORS}"\n')
    code, _, err = run_cli(["run", "--config", config, "--seeds", "0", "--out", tmp_path / "o"])
    assert code == 2 and "the stream option path is required" in err
    assert not (tmp_path / "o").exists()
    line = own_cli_error(TENSORS, tmp_path, path=tmp_path / "absent.npz")
    assert f"{tmp_path / 'absent.npz'} does not exist" in line
    line = own_cli_error(FOLDER, tmp_path, path=tmp_path / "absent")
    assert f"{tmp_path / 'absent'} does not exist" in line


def bad_file(tmp_path, name="bad.npz", **changes):
    arrays = own_arrays()
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    return write_npz(tmp_path / name, arrays)


@pytest.mark.parametrize("changes,message", [
    ({"y_test": None}, "has no y_test (it holds: x_train, y_train, x_test)"),
    ({"y_train": np.arange(11) % 4}, "x_train holds 12 samples but y_train 11 labels"),
    ({"y_train": np.array([0, 1, 3] * 4)}, "class 2 has no training sample"),
    ({"y_train": np.array([0, 1, -1, 2] * 3)}, "found a negative label"),
    ({"y_test": np.array([0, 1, 2, 4] * 2)}, "y_test holds label 4, outside the training "
                                             "classes 0..3"),
    ({"y_test": np.array([0, 1, 2, 2] * 2)}, "class 3 has no test sample"),
    ({"y_train": np.arange(12) % 4 * 1.0}, "y_train must be 1-D integer labels"),
    ({"x_train": np.zeros((12, 6), dtype=np.int64)}, "x_train has dtype int64"),
    ({"x_test": np.zeros((8, 5), dtype=np.float32)}, "x_test holds float32 samples of shape "
                                                     "(5,), x_train float32 of shape (6,)"),
    ({"x_train": np.zeros((12, 2, 2, 2, 2), dtype=np.float32),
      "x_test": np.zeros((8, 2, 2, 2, 2), dtype=np.float32)}, "inputs of shape (2, 2, 2, 2)"),
])
def test_bad_tensor_files(tmp_path, changes, message):
    line = own_cli_error(TENSORS, tmp_path, path=bad_file(tmp_path, **changes))
    assert message in line


def test_unreadable_foreign_and_misnamed_tensor_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip archive")
    assert f"{garbage} cannot be read" in own_cli_error(TENSORS, tmp_path, path=garbage)
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    assert "holds a list, not a dict" in own_cli_error(TENSORS, tmp_path, path=listed)
    text = tmp_path / "data.csv"
    text.write_text("1,2\n")
    assert "is not a .npz or .pt file" in own_cli_error(TENSORS, tmp_path, path=text)


def test_too_few_classes_for_the_split(tmp_path, feature_file, image_tree):
    line = own_cli_error(TENSORS, tmp_path, path=feature_file, n_experiences=3)
    assert "impossible split: 4 classes do not divide into 3" in line
    line = own_cli_error(FOLDER, tmp_path, path=image_tree, first=3, n_experiences=3)
    assert "impossible split" in line


def test_bad_image_trees(tmp_path, image_tree):
    jpeg = image_tree / "train" / "dog" / "1.jpg"
    jpeg.write_bytes(b"\xff\xd8\xff garbage")
    line = own_cli_error(FOLDER, tmp_path, path=image_tree)
    assert f"{jpeg} is not a readable image" in line
    jpeg.unlink()
    (image_tree / "test" / "owl").rename(image_tree / "test" / "emu")
    line = own_cli_error(FOLDER, tmp_path, path=image_tree)
    assert "class folders of train and test differ (owl only in train; emu only in test)" in line
    (image_tree / "test" / "emu").rename(image_tree / "test" / "owl")
    for image in (image_tree / "test" / "yak").iterdir():
        image.unlink()
    line = own_cli_error(FOLDER, tmp_path, path=image_tree)
    assert f"{image_tree / 'test' / 'yak'} holds no PNG or JPEG image" in line
    for image in (image_tree / "test").iterdir():
        image.rename(tmp_path / image.name)
    assert f"{image_tree / 'test'} holds no class folder" in own_cli_error(FOLDER, tmp_path,
                                                                          path=image_tree)
    (image_tree / "test").rmdir()
    assert f"{image_tree / 'test'} is missing" in own_cli_error(FOLDER, tmp_path,
                                                                path=image_tree)
