"""Weight fusion: the fusion rules' identities (bitwise), the head-row merge, normalisation
re-estimation, no SGD after step 1, and a valid record on split-digits."""
import copy

import pytest
import torch
from helpers import assert_metrics_in_range

from benchmark.core.models import make_backbone
from benchmark.core.tensors import experience_tensors
from benchmark.data import get_stream
from benchmark.run.plan import Experiment
from benchmark.run.runner import execute_run
from strategies import StrategyContext, TrainSettings, WeightFusion, get_strategy
from strategies.weight_fusion import (
    changed_fraction,
    fuse_nonessential,
    fuse_summation,
    least_important_mask,
    norm_layers,
    reestimate_norm_statistics,
)

SETTINGS = TrainSettings(epochs=1, batch_size=32, lr=0.01)


def trained_state(seed: int) -> dict:
    """A state dict of the digits MLP with weights and BatchNorm statistics away from init."""
    model = make_backbone("mlp", 10, (64,), seed=seed)
    x = torch.rand(200, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + 7)))
        model.train()
        model(x)
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_states_equal(a: dict, b: dict, names=None):
    for name in names if names is not None else a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def test_task_arithmetic_with_zero_lambda_is_the_target_bitwise():
    target, source, theta0 = trained_state(0), trained_state(1), trained_state(2)
    fused = fuse_summation(target, source, theta0, "task-arithmetic", lam=0.0)
    assert fused.keys() == target.keys()
    assert_states_equal(fused, target)
    moved = fuse_summation(target, source, theta0, "task-arithmetic", lam=0.5)
    assert not torch.equal(moved["blocks.0.0.weight"], target["blocks.0.0.weight"])


def test_mean_of_a_model_with_itself_is_the_identity():
    target = trained_state(0)
    fused = fuse_summation(target, copy.deepcopy(target), {}, "mean")
    assert_states_equal(fused, target)


def test_sum_and_mean_follow_their_definitions():
    target, source = trained_state(0), trained_state(1)
    w = "blocks.1.0.weight"
    assert torch.equal(fuse_summation(target, source, {}, "sum")[w], target[w] + source[w])
    assert torch.equal(fuse_summation(target, source, {}, "mean")[w], (target[w] + source[w]) / 2)
    steps = "blocks.0.1.num_batches_tracked"
    assert torch.equal(fuse_summation(target, source, {}, "sum")[steps], target[steps])


def test_nonessential_with_zero_fraction_is_the_target_bitwise():
    target, source = trained_state(0), trained_state(1)
    importance = {n: target[n].abs() for n in target if n.endswith("weight")}
    fused = fuse_nonessential(target, source, importance, fraction=0.0)
    assert_states_equal(fused, target)


def test_nonessential_overwrites_exactly_the_least_important_weights():
    target, source = trained_state(0), trained_state(1)
    name = "blocks.1.0.weight"
    importance = {name: target[name].abs()}
    fused = fuse_nonessential(target, source, importance, fraction=0.25)
    mask = least_important_mask(importance[name], 0.25)
    assert int(mask.sum()) == int(0.25 * target[name].numel())
    assert importance[name][mask].max() <= importance[name][~mask].min()
    assert torch.equal(fused[name][mask], source[name][mask])
    assert torch.equal(fused[name][~mask], target[name][~mask])
    assert_states_equal(fused, target, [n for n in target if n != name])
    assert changed_fraction(target, fused, [name]) == pytest.approx(0.25, abs=1e-3)
    everything = fuse_nonessential(target, source, importance, fraction=1.0)
    assert torch.equal(everything[name], source[name])


def test_reestimated_statistics_are_those_of_the_data():
    model = make_backbone("mlp", 10, (64,), seed=0)
    x = torch.rand(300, 64, generator=torch.Generator().manual_seed(3))
    assert reestimate_norm_statistics(model, x, batch_size=512) == 2
    bn = model.blocks[0][1]
    with torch.no_grad():
        h = model.blocks[0][0](model.stem(x))
    assert torch.allclose(bn.running_mean, h.mean(dim=0), atol=1e-5)
    assert torch.allclose(bn.running_var, h.var(dim=0, unbiased=True), rtol=1e-4, atol=1e-6)
    assert bn.momentum == 0.1


def run_two_steps(seed=0, **options):
    """WeightFusion on the first two experiences of split-digits; returns the strategy, the
    target's state after step 1 and after step 2, and the step-2 source's state."""
    data = get_stream("split-digits").build(seed=seed)
    exps = data.train_experiences()
    model = make_backbone("mlp", 10, (64,), seed=seed)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    sources = {}

    def default_provider(experience):
        source = make_backbone("mlp", 10, (64,), seed=100 + experience.current_experience)
        sources[experience.current_experience] = source
        return source.eval()

    strategy = WeightFusion(model=model, optimizer=SETTINGS.make_optimizer(model.parameters()),
                            source_provider=default_provider, initial_state=theta0,
                            train_mb_size=32, train_epochs=1, **options)
    strategy.train(exps[0], eval_streams=[])
    before = {k: v.clone() for k, v in strategy.model.state_dict().items()}
    strategy.train(exps[1], eval_streams=[])
    after = {k: v.clone() for k, v in strategy.model.state_dict().items()}
    return strategy, before, after, sources[1].state_dict(), data.classes_per_step


@pytest.mark.parametrize("options", [
    dict(mode="task-arithmetic", lam=0.0, reestimate_norm=False),
    dict(mode="nonessential", fraction=0.0, importance="fisher", reestimate_norm=False),
    dict(mode="nonessential", fraction=0.0, importance="magnitude", reestimate_norm=False),
])
def test_an_identity_fusion_leaves_the_target_body_bitwise_and_swaps_only_new_head_rows(options):
    strategy, before, after, source, classes = run_two_steps(**options)
    body = [k for k in before if not k.startswith("head.")]
    assert_states_equal(after, before, body)
    old, new = classes[0], classes[1]
    for name in ("head.weight", "head.bias"):
        assert torch.equal(after[name][old], before[name][old])
        assert torch.equal(after[name][new], source[name][new])
    report = strategy.step_reports[1]
    assert report["mode"] == options["mode"]
    assert report["fraction_changed_body"] == 0.0
    assert 0.0 < report["fraction_changed"] < 0.05
    assert report["trainable_parameters"] == 0


def test_the_strategy_reestimates_statistics_as_reestimate_norm_statistics_does():
    """The strategy's forward-only phase (in Avalanche's loop) gives, bit for bit, the
    statistics ``reestimate_norm_statistics`` computes on the step's decoded data."""
    strategy, _, after, _, _ = run_two_steps(mode="sum", eval_mb_size=100)
    model = make_backbone("mlp", 10, (64,), seed=0)
    model.load_state_dict(after)
    x, _ = experience_tensors(get_stream("split-digits").build(seed=0).train_experiences()[1])
    assert len(x) > 200  # several batches of 100
    assert reestimate_norm_statistics(model, x, batch_size=100) == 2
    assert strategy.step_reports[1]["norm_layers_reestimated"] == 2
    assert_states_equal(model.state_dict(), after)
    assert [m.momentum for m in norm_layers(strategy.model)] == [0.1, 0.1]


def test_fusing_the_target_with_itself_in_mean_mode_changes_nothing():
    holder = {}

    def itself(experience):
        return copy.deepcopy(holder["strategy"].model).eval()

    data = get_stream("split-digits").build(seed=0)
    exps = data.train_experiences()
    model = make_backbone("mlp", 10, (64,), seed=0)
    strategy = WeightFusion(model=model, optimizer=SETTINGS.make_optimizer(model.parameters()),
                            source_provider=itself, mode="mean", reestimate_norm=False,
                            train_mb_size=32, train_epochs=1)
    holder["strategy"] = strategy
    strategy.train(exps[0], eval_streams=[])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    strategy.train(exps[1], eval_streams=[])
    assert_states_equal(strategy.model.state_dict(), before)
    assert strategy.step_reports[1]["fraction_changed"] == 0.0


def test_only_the_first_step_trains():
    data = get_stream("split-digits").build(seed=0)
    model = make_backbone("mlp", 10, (64,), seed=0)
    strategy = WeightFusion(model=model, optimizer=SETTINGS.make_optimizer(model.parameters()),
                            source_provider=lambda e: make_backbone("mlp", 10, (64,), seed=9),
                            mode="sum", train_mb_size=32, train_epochs=2)
    epochs, original = [], strategy.training_epoch

    def counting_epoch(**kwargs):
        phase = strategy._phase
        epochs.append((strategy.experience.current_experience, phase.name,
                       phase.optimizer is not None))
        original(**kwargs)

    strategy.training_epoch = counting_epoch
    states = []
    for exp in data.train_experiences()[:3]:
        strategy.train(exp, eval_streams=[])
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    # two training epochs at step 1; later steps only re-estimate BatchNorm statistics
    # (one forward-only pass through the template's loop, no optimizer)
    assert epochs == [(0, "train", True), (0, "train", True),
                      (1, "reestimate-norm", False), (2, "reestimate-norm", False)]
    assert [s["mode"] for s in strategy.step_reports] == ["train", "sum", "sum"]
    assert not torch.equal(states[1]["blocks.0.0.weight"], states[0]["blocks.0.0.weight"])


def test_weight_fusion_needs_a_source():
    from benchmark.core.errors import UsageError

    model = make_backbone("mlp", 10, (64,), seed=0)
    ctx = StrategyContext(device=torch.device("cpu"), train=SETTINGS, seed=0, num_classes=10)
    spec = get_strategy("weight-fusion")
    assert spec.uses_source
    with pytest.raises(UsageError, match="source"):
        spec.build(model, ctx, **spec.resolve({}))


@pytest.mark.parametrize("options", [{}, {"mode": "nonessential", "importance": "fisher"}])
def test_weight_fusion_record_on_split_digits(options):
    cfg = Experiment(strategies=["weight-fusion"], seeds=[0], train={"epochs": 2}, device="cpu",
                     strategy_options={"weight-fusion": options} if options else {}
                     ).run_configs()[0]
    record = execute_run(cfg)
    assert record["status"] == "ok", record["error"]
    assert_metrics_in_range(record["metrics"])
    steps = record["steps"]
    assert len(steps) == 5
    assert steps[0]["mode"] == "train" and steps[0]["trainable_parameters"] > 0
    for step in steps[1:]:
        assert step["mode"] == cfg.hparams["mode"]
        assert 0.0 < step["fraction_changed"] <= 1.0
        assert step["trainable_parameters"] == 0
        assert step["norm_layers_reestimated"] == 2
    if cfg.hparams["mode"] == "nonessential":
        assert all(s["fraction_changed_body"] <= cfg.hparams["fraction"] + 1e-9 for s in steps[1:])
    assert record["costs"]["trainable_parameters"][1:] == [0, 0, 0, 0]
    asked = record["costs"]["source"]["provider_seconds"]
    assert asked[0] is None and all(s is not None for s in asked[1:])
