"""PNC's parts against their definitions: pruned clones compute what the gated source computes,
Gaussian statistics and routing by hand, the position choice, the ablations and the pretrained
source provider."""
import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats as st

from benchmark.core.models import make_backbone
from benchmark.run.plan import Experiment
from benchmark.run.runner import execute_run
from strategies.pnc.network import CloneModule, channel_view
from strategies.pnc.routers import GaussianRouter, GaussianStats
from strategies.pnc.strategy import best_position

BACKBONES = [("mlp", (1, 6, 6)), ("cnn", (1, 8, 8)), ("reduced-resnet18", (3, 8, 8)),
             ("resnet32", (3, 8, 8)), ("resnet18", (3, 16, 16)),
             # the CNN of the committed Fashion-MNIST results, on its inputs' shape
             ("cnn:channels=16-32-64", (1, 28, 28))]


def gated(source, masks, x, upto=None):
    """The source's pooled features with every block output multiplied by its mask (or, with
    ``upto``, the gated features at that boundary)."""
    h = source.stem(x)
    for i, (block, m) in enumerate(zip(source.blocks, masks)):
        if i == upto:
            return h
        h = block(h)
        h = h * channel_view(m.float(), h)
    return h if upto == len(source.blocks) else source.pool(h)


@pytest.mark.parametrize("name, shape", BACKBONES)
def test_pruned_clones_compute_the_gated_source_exactly(name, shape):
    gen = torch.Generator().manual_seed(0)
    source = make_backbone(name, 4, shape, seed=1).eval()
    for m in source.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)
    masks = [torch.rand(w, generator=gen) < 0.5 for w in source.widths[1:]]
    for m in masks:
        m[0] = True
    x = torch.randn(3, *shape, generator=gen)
    with torch.no_grad():
        expected = gated(source, masks, x)
        for position in range(len(source.blocks)):
            module = CloneModule(source, masks, position, source.widths[position], [0, 1],
                                 source.spatial, adapter_norm=False).eval()
            assert module.pruned
            feature = gated(source, masks, x, upto=position)
            kept = expected[:, masks[-1]]
            assert torch.allclose(module.features(feature), kept, atol=1e-5), position
            full = sum(p.numel() for b in source.blocks[position:] for p in b.parameters())
            assert module.copied_parameters() < full


def test_gaussian_statistics_stream_and_score_like_their_definition():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(60, 3, generator=gen, dtype=torch.float64)
    y = torch.tensor([4] * 25 + [7] * 35)
    z[y == 7] += 2.0
    stats = GaussianStats([4, 7])
    for i in range(0, 60, 16):  # batch by batch
        stats.add(z[i:i + 16], y[i:i + 16])
    means = np.stack([z[y == c].numpy().mean(0) for c in (4, 7)])
    centred = z.numpy() - means[(y == 7).long().numpy()]
    within = centred.T @ centred / (60 - 2)
    assert np.allclose(stats.means().numpy(), means)
    shrunk = 0.8 * within + 0.2 * np.trace(within) / 3 * np.eye(3) + 1e-4 * np.eye(3)
    assert np.allclose(stats.pooled_covariance(0.2).numpy(), shrunk)
    router = GaussianRouter(stats, 0.2)
    q = torch.randn(5, 3, generator=gen)
    expected = np.stack([st.multivariate_normal(means[i], shrunk).logpdf(q.numpy())
                         for i in range(2)], axis=1)
    assert np.allclose(router.class_scores(q).numpy(), expected, atol=1e-3)
    assert np.allclose(router.score(q).numpy(), np.logaddexp(expected[:, 0], expected[:, 1]),
                       atol=1e-3)


def test_gate_routing_is_newest_first():
    from strategies.pnc.routers import route

    class Net(torch.nn.Module):
        routing = "gate"

        def __init__(self, gates):
            super().__init__()
            self.clones = torch.nn.ModuleDict({str(i + 2): torch.nn.Module()
                                               for i in range(len(gates))})
            for module, g in zip(self.clones.values(), gates):
                module.router = lambda z, g=g: torch.full((len(z),), g)

        def router_features(self, x, feats):
            return x

    a, b = 0.3, -1.2  # gate logits of steps 2 and 3
    log_p = route(Net([a, b]), torch.zeros(1, 2), [])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = [(1 - sig(a)) * (1 - sig(b)), sig(a) * (1 - sig(b)), sig(b)]
    assert np.allclose(log_p.exp().numpy()[0], expected)


def test_position_choice_prefers_accuracy_then_loss_then_fewer_parameters():
    scores = {0: {"accuracy": 0.9, "loss": 0.1}, 1: {"accuracy": 0.95, "loss": 0.3}}
    assert best_position(scores, {0: 10, 1: 5}) == (1, "held-out accuracy")
    scores[0]["accuracy"] = 0.95
    assert best_position(scores, {0: 10, 1: 5}) == (0, "held-out loss (accuracy tied)")
    scores[1]["loss"] = 0.1
    assert best_position(scores, {0: 10, 1: 5})[0] == 1
    assert best_position({2: scores[0]}, {2: 1}) == (2, "only candidate")


FAST = dict(localise_epochs=8, insert_epochs=1)


def run(strategy, options=None, source=None, seed=0):
    options = dict(FAST, **(options or {})) if strategy != "pnc-router" else (options or {})
    exp = Experiment(strategies=[strategy], seeds=[seed], train={"epochs": 2},
                     strategy_options={strategy: options} if options else {},
                     source=source or {"provider": "expert"})
    record = execute_run(exp.run_configs()[0])
    assert record["status"] == "ok", record["error"]
    return record


def test_pnc_router_is_the_statistics_alone():
    record = run("pnc-router")
    assert record["strategy_info"]["role"] == "ablation"
    # input space on split-digits: per step 2 means and a 64 x 64 whitening, nothing else
    per_step = (2 * 64 + 64 * 64 + 1) * 4
    assert record["costs"]["model_bytes"] == [per_step * k for k in range(1, 6)]
    assert record["metrics"]["final_accuracy"] > 0.8


def test_pnc_oracle_uses_pncs_own_modules_and_the_true_step():
    pnc, oracle = run("pnc"), run("pnc-oracle")
    assert oracle["strategy_info"]["role"] == "reference"
    assert [s["parameters_added"] for s in oracle["steps"]] == \
        [s["parameters_added"] for s in pnc["steps"]]
    assert [s["position"] for s in oracle["steps"]] == [s["position"] for s in pnc["steps"]]
    # with the step given, each head chooses among its own classes only
    assert oracle["metrics"]["final_accuracy"] >= pnc["metrics"]["final_accuracy"]
    assert oracle["step_locality"][1:] == [1.0] * 4


def test_pretrained_source_is_one_network_for_every_step():
    record = run("pnc", source={"provider": "pretrained"}, seed=1)
    assert record["config"]["source"] == {"provider": "pretrained"}
    cached = record["costs"]["source"]["cached"]
    trained = record["costs"]["source"]["train_seconds"]
    assert cached[1] is False and all(c is True for c in cached[2:])
    assert trained[1] > 0 and all(t is None for t in trained[2:])
    assert all(0 < s["kept_fraction"] < 1 for s in record["steps"][1:])


def test_a_copied_source_is_not_changed_by_cloning():
    source = make_backbone("mlp", 10, (64,), seed=0)
    before = copy.deepcopy(source.state_dict())
    masks = [torch.ones(w, dtype=torch.bool) for w in source.widths[1:]]
    module = CloneModule(source, masks, 0, 64, [1, 2], False, False)
    with torch.no_grad():
        module.head.weight.add_(1.0)
        for p in module.blocks.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in source.state_dict().items())
