"""Dynamic expansion: the trunk is frozen bitwise after step 1, expansion leaves earlier branches
untouched, distillation extends a head, GroupNorm replaces BatchNorm, logits cover all classes,
and the record on split-digits says which way each step went."""

import pytest
import torch
from helpers import assert_metrics_in_range, state_hash
from torch import nn

from benchmark.core.errors import UsageError
from benchmark.core.models import make_backbone
from benchmark.data import get_stream
from benchmark.run.plan import Experiment
from benchmark.run.runner import execute_run
from strategies import DynamicExpansion, StrategyContext, TrainSettings, get_strategy
from strategies.dynamic_expansion import UNSEEN_LOGIT, batchnorm_to_groupnorm

SETTINGS = TrainSettings(epochs=1, batch_size=32, lr=0.01)


def build(**options) -> DynamicExpansion:
    spec = get_strategy("dynamic-expansion")
    model = make_backbone("mlp", 10, (64,), seed=0)
    ctx = StrategyContext(device=torch.device("cpu"), train=SETTINGS, seed=0, num_classes=10)
    return spec.build(model, ctx, **spec.resolve(options))


@pytest.fixture(scope="module")
def stream():
    return get_stream("split-digits").build(seed=0)


def train_all(strategy, stream, after_step=None):
    for exp in stream.train_experiences():
        strategy.train(exp, eval_streams=[])
        if after_step is not None:
            after_step(strategy)


@pytest.mark.parametrize("threshold, later", [(0.0, "expand"), (1e9, "distil")])
def test_trunk_is_bitwise_frozen_after_the_first_step(stream, threshold, later):
    strategy = build(gap_threshold=threshold)
    hashes = []
    train_all(strategy, stream, lambda s: hashes.append(state_hash(s.model.trunk)))
    assert len(set(hashes)) == 1
    decisions = [r["decision"] for r in strategy.step_reports]
    assert decisions == ["initial"] + [later] * 4
    assert all(not p.requires_grad for p in strategy.model.trunk.parameters())


def test_expansion_adds_a_branch_and_leaves_earlier_ones_untouched(stream):
    strategy = build(gap_threshold=0.0)
    exps = stream.train_experiences()
    strategy.train(exps[0], eval_streams=[])
    first = state_hash(strategy.model.branches[0]), state_hash(strategy.model.heads[0])
    strategy.train(exps[1], eval_streams=[])
    net = strategy.model
    assert len(net.branches) == len(net.heads) == 2
    assert (state_hash(net.branches[0]), state_hash(net.heads[0])) == first
    assert net.head_classes == stream.classes_per_step[:2]
    report = strategy.step_reports[1]
    expected = sum(p.numel() for p in net.branches[1].parameters()) + \
        sum(p.numel() for p in net.heads[1].parameters())
    assert report["trainable_parameters"] == expected
    assert report["gap"] > 0 and report["branch"] == 1 and report["branches"] == 2


def test_distillation_extends_the_routed_head_and_counts_known_instances(stream):
    strategy = build(gap_threshold=1e9, known_confidence=0.0)
    exps = stream.train_experiences()
    strategy.train(exps[0], eval_streams=[])
    old_rows = strategy.model.heads[0].weight.detach().clone()
    strategy.train(exps[1], eval_streams=[])
    net = strategy.model
    assert len(net.branches) == 1
    assert net.head_classes == [stream.classes_per_step[0] + stream.classes_per_step[1]]
    assert net.heads[0].weight.shape == (4, old_rows.shape[1])
    report = strategy.step_reports[1]
    assert report["decision"] == "distil"
    assert report["known_instances"] == len(exps[1].y)  # confidence >= 0 holds for every sample


def test_distillation_weight_changes_training(stream):
    exps = stream.train_experiences()
    heads = []
    for alpha in (0.0, 5.0):
        strategy = build(gap_threshold=1e9, known_confidence=0.0, distill_alpha=alpha)
        strategy.train(exps[0], eval_streams=[])
        strategy.train(exps[1], eval_streams=[])
        heads.append(strategy.model.heads[0].weight.detach().clone())
    assert not torch.equal(heads[0], heads[1])


def test_no_batchnorm_and_logits_over_all_classes(stream):
    strategy = build()
    exps = stream.train_experiences()
    strategy.train(exps[0], eval_streams=[])
    strategy.train(exps[1], eval_streams=[])
    net = strategy.model
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in net.modules())
    x = stream.inputs(stream.test[0][0][:16])
    logits = strategy.predict_logits(x)
    assert logits.shape == (16, 10)
    seen = stream.classes_per_step[0] + stream.classes_per_step[1]
    unseen = [c for c in range(10) if c not in seen]
    assert bool((logits[:, unseen] == UNSEEN_LOGIT).all())
    probs = torch.softmax(logits[:, seen], dim=1)
    assert torch.allclose(probs.sum(dim=1), torch.ones(16))


def test_groupnorm_conversion_keeps_the_affine_values():
    block = make_backbone("mlp", 10, (64,), seed=0).blocks[0]
    with torch.no_grad():
        block[1].weight.uniform_(0.5, 1.5)
        block[1].bias.uniform_(-1, 1)
    weight, bias = block[1].weight.clone(), block[1].bias.clone()
    batchnorm_to_groupnorm(block)
    assert isinstance(block[1], nn.GroupNorm)
    assert torch.equal(block[1].weight, weight) and torch.equal(block[1].bias, bias)


@pytest.mark.parametrize("measure, threshold, expected", [
    ("confidence", 1.0, "distil"), ("confidence", 0.0, "expand"),
    ("feature-distance", 1e9, "distil")])
def test_gap_measures_decide_by_the_threshold(stream, measure, threshold, expected):
    strategy = build(gap_measure=measure, gap_threshold=threshold)
    exps = stream.train_experiences()
    strategy.train(exps[0], eval_streams=[])
    strategy.train(exps[1], eval_streams=[])
    report = strategy.step_reports[1]
    assert report["decision"] == expected and report["gap_measure"] == measure
    if measure == "confidence":
        assert 0.0 <= report["gap"] <= 1.0


def test_feature_gap_is_about_one_on_known_data_and_larger_on_new_classes(stream):
    strategy = build(gap_threshold=0.0)
    exps = stream.train_experiences()
    strategy.train(exps[0], eval_streams=[])
    known = float(strategy.model.feature_gap(stream.inputs(exps[0].x)).mean())
    new = strategy.measure_gap(stream.inputs(exps[1].x))
    assert known <= 1.0 + 1e-4
    assert new > known


def test_trunk_size_is_validated():
    with pytest.raises(UsageError, match="trunk_blocks"):
        build(trunk_blocks=2)
    with pytest.raises(UsageError, match="trunk_blocks"):
        build(trunk_blocks=-2)


def test_dynamic_expansion_record_on_split_digits():
    cfg = Experiment(strategies=["dynamic-expansion"], seeds=[0], train={"epochs": 2},
                     device="cpu").run_configs()[0]
    record = execute_run(cfg)
    assert record["status"] == "ok", record["error"]
    assert_metrics_in_range(record["metrics"])
    steps = record["steps"]
    assert [s["decision"] for s in steps][0] == "initial"
    for step in steps[1:]:
        expected = "expand" if step["gap"] > cfg.hparams["gap_threshold"] else "distil"
        assert step["decision"] == expected
    trainable = record["costs"]["trainable_parameters"]
    params = record["costs"]["parameters"]
    assert trainable == [s["trainable_parameters"] for s in steps]
    assert all(0 < t < p for t, p in zip(trainable[1:], params[1:]))
    branches = 1 + sum(s["decision"] == "expand" for s in steps[1:])
    assert steps[-1]["branches"] == branches


def test_training_neither_uses_nor_disturbs_the_global_rng(stream):
    states, draws = [], []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        strategy = build(gap_threshold=0.0)
        exps = stream.train_experiences()
        strategy.train(exps[0], eval_streams=[])
        strategy.train(exps[1], eval_streams=[])
        states.append(strategy.model.state_dict())
        draws.append(torch.rand(1))
        torch.manual_seed(global_seed)
        assert torch.equal(draws[-1], torch.rand(1))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
