"""Every registered strategy trains inside Avalanche's loop: plugins see its epochs and
iterations on every experience; PNC runs in one's own Avalanche code on an ``nn.Sequential``;
datasets with transforms are transformed anew at every epoch."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from avalanche.training.plugins import SupervisedPlugin
from helpers import build_strategy

from benchmark.core.models import make_backbone
from benchmark.core.training import TrainSettings
from benchmark.data import get_stream
from strategies import STRATEGIES, Finetune

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = TrainSettings(epochs=1, batch_size=64, lr=0.01)


class CountingPlugin(SupervisedPlugin):
    """Counts training epochs and iterations per experience, as any Avalanche plugin would."""

    def __init__(self):
        super().__init__()
        self.iterations, self.epochs = Counter(), Counter()

    def before_training_epoch(self, strategy, **kwargs):
        self.epochs[strategy.experience.current_experience] += 1

    def after_training_iteration(self, strategy, **kwargs):
        self.iterations[strategy.experience.current_experience] += 1


@pytest.fixture(scope="module")
def digits():
    return get_stream("split-digits").build(seed=0)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_plugins_see_training_on_every_experience(name, digits):
    counter = CountingPlugin()
    strategy = build_strategy(name, digits, SETTINGS, plugins=[counter])
    for experience in digits.train_experiences():
        strategy.train(experience, eval_streams=[])
    steps = range(digits.n_steps)
    assert all(counter.iterations[k] > 0 for k in steps), (name, counter.iterations)
    assert all(counter.epochs[k] > 0 for k in steps), (name, counter.epochs)


def readme_example() -> str:
    """The code block under the README's "Use PNC in your own Avalanche code" heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Use PNC in your own Avalanche code", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_pnc_on_an_nn_sequential_in_plain_avalanche():
    namespace = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    net, model = namespace["strategy"].model, namespace["model"]
    assert isinstance(model, torch.nn.Sequential)
    assert net.steps == [3, 4, 5]  # step 2's module was removed by the example
    accuracy = namespace["accuracy"]
    assert 0.5 < accuracy <= 1.0  # far above chance (0.1) on the five experiences


def test_transformed_datasets_are_transformed_again_at_every_epoch(digits):
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
    from torch.utils.data import TensorDataset

    seen = []

    class Noise:
        """A random transform: each call draws new noise."""

        def __call__(self, x):
            return x + torch.randn_like(x)

    class FirstSample(SupervisedPlugin):
        def before_training_iteration(self, strategy, **kwargs):
            seen.append(strategy.mb_x.sum().item())

    x, y = digits.train[0]
    x = digits.inputs(x)
    bench = nc_benchmark(TensorDataset(x, y), TensorDataset(x, y), n_experiences=1,
                         task_labels=False, seed=0,
                         train_transform=Noise(), eval_transform=None)
    model = make_backbone("mlp", 10, (64,), seed=0)
    strategy = Finetune(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                        train_mb_size=len(y), train_epochs=3, plugins=[FirstSample()])
    strategy.train(bench.train_stream[0], eval_streams=[])
    assert len(seen) == 3
    assert len(set(seen)) == 3  # the same (whole) batch, with new noise at each epoch


def test_a_last_batch_of_one_sample_is_skipped_for_avalanche_datasets(digits):
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
    from torch.utils.data import TensorDataset

    x, y = digits.train[0]
    x = digits.inputs(x)[:33]  # 33 samples in batches of 32: one sample left over
    y = y[:33]
    bench = nc_benchmark(TensorDataset(x, y), TensorDataset(x, y), n_experiences=1,
                         task_labels=False, seed=0)
    model = make_backbone("mlp", 10, (64,), seed=0)  # BatchNorm: a batch of one fails
    counter = CountingPlugin()
    strategy = Finetune(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                        train_mb_size=32, train_epochs=2, plugins=[counter])
    strategy.train(bench.train_stream[0], eval_streams=[])
    assert counter.iterations[0] == 2  # one full batch per epoch
