"""Every registered strategy trains and predicts on every backbone and every input shape the
backbone takes (tiny tensors), so a shape crash cannot land again."""
from __future__ import annotations

import pytest
import torch

from benchmark.core.models import make_backbone
from benchmark.core.training import TrainSettings
from benchmark.data import StreamData
from benchmark.run.evaluate import predict
from benchmark.run.sources import ExpertProvider
from strategies import STRATEGIES, StrategyContext

COMBINATIONS = [("mlp", (12,)), ("mlp", (1, 8, 8)), ("mlp", (3, 8, 8)), ("cnn", (1, 8, 8)),
                ("cnn", (3, 8, 8)), ("reduced-resnet18", (3, 8, 8)), ("resnet32", (1, 8, 8)),
                ("resnet18", (3, 16, 16))]
SETTINGS = TrainSettings(epochs=1, batch_size=4, lr=0.01, eval_batch_size=8)


def tiny_stream(shape, seed=0) -> StreamData:
    """Two experiences of two classes, 6 training and 2 test samples a class, uint8 inputs
    decoded to [0, 1] floats."""
    gen = torch.Generator().manual_seed(seed)
    classes = [[0, 1], [2, 3]]

    def split(per_class):
        out = []
        for step in classes:
            y = torch.tensor(step).repeat_interleave(per_class)
            x = torch.randint(0, 256, (len(y), *shape), generator=gen, dtype=torch.uint8)
            x[y % 2 == 1] //= 2  # a little signal
            out.append((x, y))
        return out

    return StreamData("tiny", seed, 4, tuple(shape), "mlp", classes, split(6), split(2),
                      decode=lambda x: x.float() / 255)


@pytest.mark.slow
@pytest.mark.parametrize("backbone, shape", COMBINATIONS)
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_runs_on_backbone_and_input_shape(name, backbone, shape):
    spec = STRATEGIES[name]
    data = tiny_stream(shape)

    def make_model():
        return make_backbone(backbone, 4, shape, seed=0)

    model = make_model()
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    identity = {"test": "shapes", "backbone": backbone, "shape": list(shape)}
    provider = ExpertProvider(make_model, theta0, SETTINGS, identity,
                              torch.device("cpu")) if spec.uses_source else None
    ctx = StrategyContext(device=torch.device("cpu"), train=SETTINGS, seed=0, num_classes=4,
                          source_provider=provider, initial_state=theta0,
                          sample_bytes=data.sample_bytes, memory_bytes=8 * data.sample_bytes)
    options = spec.resolve({})
    if name.startswith("pnc") and name != "pnc-router":
        options.update(localise_epochs=1, insert_epochs=1)
    strategy = spec.build(model, ctx, **options)
    seen = []
    for k, experience in enumerate(data.train_experiences()):
        strategy.train(experience, eval_streams=[])
        seen += data.classes_per_step[k]
        for j in range(k + 1):
            preds = predict(strategy, data.test[j][0], seen, 8, data.decode, step=j)
            assert preds.shape == (len(data.test[j][1]),)
            assert set(preds.tolist()) <= set(seen)
