"""``split-digits``: the embedded default stream."""
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from benchmark.core.errors import UsageError
from benchmark.data import get_stream
from benchmark.data.digits import build_split_digits

N_IMAGES = 1797  # scikit-learn's bundled digits
N_TEST = 359  # per class c: round(0.2 * n_c) of its n_c images (sum over the 10 classes)


@pytest.fixture(scope="module")
def streams():
    return {seed: build_split_digits(seed) for seed in (0, 1)}


def _samples_by_class(split):
    """class -> (x, y) of that class, in stream order."""
    out = {}
    for x, y in split:
        for c in y.unique().tolist():
            out[c] = (x[y == c], y[y == c])
    return out


class TestShape:
    def test_registered_with_mlp_backbone(self):
        spec = get_stream("split-digits")
        assert spec.backbone == "mlp"
        assert not spec.needs_data_root

    def test_five_experiences_of_two_disjoint_classes(self, streams):
        for data in streams.values():
            assert data.n_steps == 5
            assert [len(c) for c in data.classes_per_step] == [2] * 5
            flat = [c for step in data.classes_per_step for c in step]
            assert sorted(flat) == list(range(10))  # disjoint and covering 0..9

    def test_each_experience_holds_only_its_classes(self, streams):
        data = streams[0]
        for split in (data.train, data.test):
            for (x, y), classes in zip(split, data.classes_per_step):
                assert set(y.tolist()) == set(classes)
                assert x.shape == (len(y), 64)
                assert x.dtype == torch.uint8 and y.dtype == torch.int64  # stored: 0..16
                assert int(x.max()) == 16
                inputs = data.inputs(x)  # model inputs: x / 16
                assert inputs.dtype == torch.float32 and torch.equal(inputs, x.float() / 16)
        assert data.sample_bytes == 64 + 8

    def test_sizes_add_up_to_all_images(self, streams):
        data = streams[0]
        n_train = sum(len(y) for _, y in data.train)
        n_test = sum(len(y) for _, y in data.test)
        assert n_train + n_test == N_IMAGES
        assert n_test == N_TEST

    def test_two_experiences_of_five_classes(self):
        data = build_split_digits(0, n_experiences=2)
        assert [len(c) for c in data.classes_per_step] == [5, 5]
        assert sorted(c for step in data.classes_per_step for c in step) == list(range(10))

    def test_impossible_split_is_a_usage_error(self):
        with pytest.raises(UsageError, match="impossible split"):
            build_split_digits(0, n_experiences=3)


class TestSeeds:
    def test_class_order_depends_on_the_seed(self, streams):
        assert streams[0].classes_per_step != streams[1].classes_per_step

    def test_same_seed_same_stream(self, streams):
        again = build_split_digits(0)
        assert again.classes_per_step == streams[0].classes_per_step
        for (xa, ya), (xb, yb) in zip(again.train + again.test, streams[0].train + streams[0].test):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)

    def test_each_seed_draws_its_own_stratified_test_split(self, streams):
        """20% of every class is held out, and which images depends on the seed."""
        per_class = np.bincount(load_digits().target)
        tests = []
        for data in streams.values():
            test = _samples_by_class(data.test)
            for c in range(10):
                assert len(test[c][1]) == int(np.floor(0.2 * per_class[c] + 0.5))
            tests.append(test)
        assert all(len(tests[0][c][0]) == len(tests[1][c][0]) for c in range(10))
        assert any(not torch.equal(tests[0][c][0], tests[1][c][0]) for c in range(10))

    @pytest.mark.parametrize("seed", [0, 1])
    def test_train_and_test_are_disjoint(self, streams, seed):
        data = streams[seed]
        train = [tuple(row.tolist()) for x, _ in data.train for row in x]
        test = [tuple(row.tolist()) for x, _ in data.test for row in x]
        # every image is in exactly one split (rows repeat across the data set, so count)
        everything = Counter(tuple(row) for row in load_digits().data.astype(int).tolist())
        assert Counter(train) + Counter(test) == everything
        assert len(train) + len(test) == N_IMAGES
