"""Compact storage (inputs kept uint8, decoded batch by batch on the device), the stratified
hold-out, and the validation carve that tuning builds on (it never reads the test split)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.core.errors import UsageError
from benchmark.core.tensors import TensorLoader
from benchmark.data import get_stream, stratified_holdout, validation_split
from benchmark.data.augment import CropFlip
from benchmark.data.files import Normalise, normalise


@pytest.fixture(scope="module")
def digits():
    return get_stream("split-digits").build(seed=0)


# ----- compact storage -------------------------------------------------------------------------

def test_normalise_runs_on_the_batch_and_leaves_it_unchanged():
    x = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    before = x.clone()
    out = Normalise((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))(x)
    assert out.dtype == torch.float32 and torch.equal(x, before)
    expected = (x.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) \
        / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(normalise(x, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), out)


def test_stream_stays_uint8_when_placed_on_the_device(digits):
    placed = get_stream("split-digits").build(seed=0).to(torch.device("cpu"))
    assert all(x.dtype == torch.uint8 for x, _ in placed.train + placed.test)
    assert placed.sample_bytes == 64 + 8
    assert sum(x.nelement() * x.element_size() for x, _ in placed.train) == \
        sum(len(y) for _, y in placed.train) * 64


def test_loader_decodes_each_batch_then_augments():
    x = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(6)
    decode = Normalise((0.5,), (0.25,))
    augment = CropFlip(padding=1, fill=(-2.0,))
    loader = TensorLoader(x, y, 6, shuffle=False, generator=torch.Generator().manual_seed(3),
                          decode=decode, augment=augment)
    (xb, yb, _), = list(loader)
    expected = augment(decode(x), torch.Generator().manual_seed(3))
    assert torch.equal(xb, expected) and torch.equal(yb, y)


def test_experiences_hand_out_model_inputs(digits):
    exp = digits.train_experiences()[0]
    assert exp.x.dtype == torch.uint8
    sample, label, _ = exp.dataset[0]  # Avalanche's view: decoded inputs
    assert sample.dtype == torch.float32 and torch.equal(sample, exp.x[0].float() / 16)
    assert int(label) == int(exp.y[0])


# ----- stratified hold-out ---------------------------------------------------------------------

def test_stratified_holdout_counts_and_partition():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1 + [3] * 2)
    kept, held = stratified_holdout(labels, 0.2, seed=4)
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))
    assert not set(kept) & set(held)
    counts = np.bincount(labels[held], minlength=4).tolist()
    assert counts == [2, 1, 0, 1]  # round(0.2 n), at least 1, at most n - 1
    assert list(held) == sorted(held) and list(kept) == sorted(kept)


def test_stratified_holdout_is_seeded_per_class():
    labels = np.repeat(np.arange(3), 20)
    first, again = stratified_holdout(labels, 0.25, 7)[1], stratified_holdout(labels, 0.25, 7)[1]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, stratified_holdout(labels, 0.25, 8)[1])
    # a class's draw does not depend on the other classes present
    alone = np.flatnonzero(labels == 1)
    _, held_alone = stratified_holdout(labels[alone], 0.25, 7)
    assert np.array_equal(alone[held_alone], first[labels[first] == 1])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_holdout_refuses_bad_fractions(fraction):
    with pytest.raises(UsageError, match="held-out fraction"):
        stratified_holdout(np.zeros(4, dtype=np.int64), fraction, 0)


# ----- validation carve ------------------------------------------------------------------------

def test_validation_split_carves_from_training_data_only(digits):
    carve = validation_split(digits, 0.25, seed=11)
    assert carve.classes_per_step == digits.classes_per_step
    assert carve.decode is digits.decode and carve.augment is digits.augment
    for (x, y), (xv, yv), (xt, yt) in zip(digits.train, carve.test, carve.train):
        assert len(yv) + len(yt) == len(y)
        for c in y.unique().tolist():
            n = int((y == c).sum())
            assert int((yv == c).sum()) == int(np.floor(0.25 * n + 0.5))
        # the two parts are exactly the training rows, split apart
        rows = {tuple(r) + (int(lab),) for r, lab in zip(x.tolist(), y.tolist())}
        carved = [tuple(r) + (int(lab),) for r, lab in zip(torch.cat([xt, xv]).tolist(),
                                                           torch.cat([yt, yv]).tolist())]
        assert set(carved) == rows and len(carved) == len(y)


def test_validation_split_never_reads_the_test_split(digits):
    carve = validation_split(digits, 0.2, seed=3)
    spoiled = get_stream("split-digits").build(seed=0)
    spoiled.test = [(torch.full_like(x, 255), torch.full_like(y, -1)) for x, y in spoiled.test]
    again = validation_split(spoiled, 0.2, seed=3)
    for (a, b), (c, d) in zip(carve.train + carve.test, again.train + again.test):
        assert torch.equal(a, c) and torch.equal(b, d)

    class Untouchable(list):
        def __iter__(self):
            raise AssertionError("the test split was read")

        def __getitem__(self, item):
            raise AssertionError("the test split was read")

    spoiled.test = Untouchable(spoiled.test)
    validation_split(spoiled, 0.2, seed=3)
    assert carve.test[0][0].dtype == torch.uint8  # still stored compact


def test_validation_split_depends_on_its_seed(digits):
    a, b = validation_split(digits, 0.2, 0), validation_split(digits, 0.2, 1)
    assert any(not torch.equal(x, y) for (x, _), (y, _) in zip(a.test, b.test))
