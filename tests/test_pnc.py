"""PNC's bitwise invariants: the target never changes, modules stack and each can be
removed, and with every module removed the network is the original target."""
import copy

import pytest
import torch
from helpers import state_hash

from benchmark.core.models import make_backbone
from benchmark.data import get_stream
from benchmark.run.plan import Experiment
from benchmark.run.runner import execute_run
from strategies import PNC, StrategyContext, TrainSettings, get_strategy
from strategies.pnc import ClonedNetwork, boundary_features

SETTINGS = TrainSettings(epochs=2, batch_size=32, lr=0.01)
FAST = dict(gate_epochs=1, insert_epochs=1)


def expert_provider(stream, seed):
    """Experts trained on each experience from theta_0, as the suite's provider does."""
    from benchmark.core.training import fit

    def provide(experience):
        model = make_backbone("mlp", 10, (64,), seed=seed)
        x, y = experience.x, experience.y
        fit(model, x, y, SETTINGS, torch.Generator().manual_seed(experience.current_experience))
        for p in model.parameters():
            p.requires_grad_(False)
        return model.eval()

    return provide


@pytest.fixture(scope="module")
def trained():
    """A PNC strategy trained through all 5 steps of split-digits, with per-step snapshots."""
    data = get_stream("split-digits").build(seed=0)
    model = make_backbone("mlp", 10, (64,), seed=0)
    ctx = StrategyContext(device=torch.device("cpu"), train=SETTINGS, seed=0, num_classes=10,
                          source_provider=expert_provider(data, 0))
    strategy = get_strategy("pnc").build(model, ctx, **get_strategy("pnc").resolve(FAST))
    hashes, snapshot, outputs = [], None, []
    x_all = torch.cat([x for x, _ in data.test])
    for exp in data.train_experiences():
        strategy.train(exp, eval_streams=[])
        net = strategy.model
        hashes.append(state_hash(net.target))
        if snapshot is None:
            snapshot = copy.deepcopy(net.target)
        outputs.append(strategy.predict_logits(x_all))
    return dict(strategy=strategy, data=data, hashes=hashes, snapshot=snapshot, x=x_all,
                outputs=outputs)


def test_target_state_is_bitwise_unchanged_by_every_step(trained):
    assert len(set(trained["hashes"])) == 1
    assert state_hash(trained["strategy"].model.target) == state_hash(trained["snapshot"])
    # BatchNorm running statistics are part of the hash: make sure they exist.
    assert any("running_mean" in k for k in trained["snapshot"].state_dict())


def test_modules_stack_one_per_later_step(trained):
    net = trained["strategy"].model
    assert isinstance(net, ClonedNetwork)
    assert net.steps == [2, 3, 4, 5]


def module_outputs(net, x):
    """Per remaining step: the module's own logits and its router's scores on ``x``."""
    net.eval()
    with torch.no_grad():
        feats = boundary_features(net.target, x)
        z = net.router_features(x, feats)
        return {s: (m(feats[m.position]), m.router.score(z)) for s, m in
                ((int(k), m) for k, m in net.clones.items())}


def test_removing_one_module_leaves_the_others_unchanged(trained):
    net = copy.deepcopy(trained["strategy"].model)
    x = trained["x"]
    hashes = {int(k): state_hash(m) for k, m in net.clones.items()}
    before = module_outputs(net, x)
    net.remove(3)
    assert net.steps == [2, 4, 5]
    after = module_outputs(net, x)
    for step in (2, 4, 5):
        assert state_hash(net.clones[str(step)]) == hashes[step]
        assert torch.equal(after[step][0], before[step][0])
        assert torch.equal(after[step][1], before[step][1])
    with torch.no_grad():
        out = net(x)
    # Step 3's classes are gone; the other steps' classes are still predicted.
    step3 = trained["data"].classes_per_step[2]
    assert torch.isinf(out[:, step3]).all()
    x2, y2 = trained["data"].test[1]
    with torch.no_grad():
        acc = (net(x2).argmax(1) == y2).float().mean().item()
    assert acc > 0.8


def test_removing_every_module_restores_the_original_target_bitwise(trained):
    net = copy.deepcopy(trained["strategy"].model)
    for step in list(net.steps):
        net.remove(step)
    x = trained["x"]
    original = trained["snapshot"].eval()
    with torch.no_grad():
        assert torch.equal(net(x), original(x))
    assert state_hash(net.target) == state_hash(original)
    with pytest.raises(KeyError):
        net.remove(2)


def test_later_modules_do_not_change_earlier_step_predictions_much(trained):
    """Locality by design: outputs on step-1 samples keep their predicted label."""
    data = trained["data"]
    x1 = data.test[0][0]
    n1 = len(x1)
    first, last = trained["outputs"][0][:n1], trained["outputs"][-1][:n1]
    seen1 = data.classes_per_step[0]
    before = torch.tensor(seen1)[first[:, seen1].argmax(1)]
    after = last.argmax(1)
    assert (before == after).float().mean().item() > 0.8


def test_step_reports_carry_position_kept_fraction_and_costs(trained):
    reports = trained["strategy"].step_reports
    assert len(reports) == 5
    assert reports[0]["parameters_added"] == 0
    depth = len(trained["snapshot"].blocks)
    for r in reports[1:]:
        assert 0 <= r["position"] <= depth
        assert 0 < r["kept_fraction"] <= 1
        assert r["parameters_added"] > 0
        assert 0 < r["trainable_parameters"] < r["parameters_added"] + 1000
        assert set(r["position_scores"]) == {str(p) for p in range(depth + 1)}


def test_pnc_record_through_the_runner():
    exp = Experiment(strategies=["pnc"], seeds=[1], train={"epochs": 2},
                     strategy_options={"pnc": dict(FAST, positions="1,2")})
    record = execute_run(exp.run_configs()[0])
    assert record["status"] == "ok", record["error"]
    steps = record["steps"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    assert all(s["position"] in (1, 2) for s in steps[1:])
    source = record["costs"]["source"]
    assert source["cached"][0] is None and all(c is not None for c in source["cached"][1:])
    assert record["metrics"]["final_accuracy"] > 0.5


def test_pnc_in_plain_avalanche_code_without_a_provider():
    """From a user's own Avalanche code: generic experiences, PNC trains its own experts."""
    from avalanche.benchmarks.scenarios.dataset_scenario import DatasetExperience

    data = get_stream("split-digits").build(seed=2)
    model = make_backbone("mlp", 10, (64,), seed=2)
    strategy = PNC(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
                   train_mb_size=32, train_epochs=1, positions="2", gate_epochs=1)
    for exp in data.train_experiences()[:3]:
        plain = DatasetExperience(dataset=exp.dataset, current_experience=exp.current_experience)
        strategy.train(plain, eval_streams=[])
    assert strategy.model.steps == [2, 3]
    x, y = data.test[2]
    assert (strategy.predict_logits(x).argmax(1) == y).float().mean() > 0.5


@pytest.mark.parametrize("routing", ["energy", "logits"])
def test_other_routings_keep_the_target_intact(routing):
    data = get_stream("split-digits").build(seed=3)
    model = make_backbone("mlp", 10, (64,), seed=3)
    ctx = StrategyContext(device=torch.device("cpu"), train=SETTINGS, seed=3, num_classes=10,
                          source_provider=expert_provider(data, 3))
    hp = get_strategy("pnc").resolve(dict(FAST, routing=routing, positions="2"))
    strategy = get_strategy("pnc").build(model, ctx, **hp)
    hashes = []
    for exp in data.train_experiences()[:3]:
        strategy.train(exp, eval_streams=[])
        hashes.append(state_hash(strategy.model.target))
    assert len(set(hashes)) == 1 and strategy.model.steps == [2, 3]
    strategy.model.remove(2), strategy.model.remove(3)
    x = data.test[0][0]
    with torch.no_grad():
        assert torch.equal(strategy.model(x), strategy.model.target(x))


def test_bad_pnc_options_are_refused():
    from benchmark.core.errors import UsageError

    spec = get_strategy("pnc")
    with pytest.raises(UsageError, match="routing"):
        spec.resolve({"routing": "magic"})
    model = make_backbone("mlp", 10, (64,), seed=0)
    with pytest.raises(UsageError, match="positions"):
        PNC(model=model, optimizer=torch.optim.Adam(model.parameters()), positions="7")
