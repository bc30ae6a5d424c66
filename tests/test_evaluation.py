"""Evaluation cannot leak the step (issue 11): for every registered strategy, predictions on
the test samples of the experiences seen so far are the same whether they are evaluated all
together, shuffled in odd-sized batches, or one experience at a time (as the runner does, which
passes the experience's index along)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import build_strategy

from benchmark.core.training import TrainSettings
from benchmark.data import get_stream
from benchmark.run.evaluate import predict
from strategies import STRATEGIES

STEPS = 3  # of split-digits' 5: three experiences seen, two of them old
SETTINGS = TrainSettings(epochs=1, batch_size=64, lr=0.01)
# References told the true step by definition (documented in their class): for them only the
# order and batching within one experience may not matter.
TOLD_THE_STEP = {"pnc-oracle"}


@pytest.fixture(scope="module")
def digits():
    return get_stream("split-digits").build(seed=0)


def trained(name: str, digits):
    """The strategy ``name`` with its default options after STEPS steps of split-digits."""
    torch.manual_seed(0)
    strategy = build_strategy(name, digits, SETTINGS)
    for experience in digits.train_experiences()[:STEPS]:
        strategy.train(experience, eval_streams=[])
    return strategy


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_predictions_do_not_depend_on_how_the_test_set_is_presented(name, digits):
    strategy = trained(name, digits)
    seen = [c for classes in digits.classes_per_step[:STEPS] for c in classes]
    tests = [digits.test[j][0] for j in range(STEPS)]
    if name in TOLD_THE_STEP:
        for j, x in enumerate(tests):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(j))
            expected = predict(strategy, x, seen, 512, digits.decode, step=j)
            shuffled = predict(strategy, x[order], seen, 7, digits.decode, step=j)
            assert np.array_equal(shuffled, expected[order.numpy()]), (name, j)
        return
    one_at_a_time = np.concatenate([predict(strategy, x, seen, 512, digits.decode, step=j)
                                    for j, x in enumerate(tests)])
    everything = torch.cat(tests)
    together = predict(strategy, everything, seen, len(everything), digits.decode)
    order = torch.randperm(len(everything), generator=torch.Generator().manual_seed(0))
    shuffled = np.empty_like(together)
    shuffled[order.numpy()] = predict(strategy, everything[order], seen, 37, digits.decode)
    assert len(set(together.tolist())) > 1  # a real prediction, not a constant
    assert np.array_equal(together, one_at_a_time), name
    assert np.array_equal(shuffled, one_at_a_time), name
