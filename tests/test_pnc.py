"""PNC's invariants: the target never changes, modules stack and each can be removed, with
every module removed the network is the original target, and every later step clones at least
one source block, pruned to the kept channels."""
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
FAST = dict(localise_epochs=8, insert_epochs=1)


def expert_provider(seed):
    """Experts trained on each experience from theta_0, as the suite's provider does."""
    from benchmark.core.training import fit

    def provide(experience):
        model = make_backbone("mlp", 10, (64,), seed=seed)
        fit(model, experience.x, experience.y, SETTINGS,
            torch.Generator().manual_seed(experience.current_experience),
            decode=experience.decode)
        for p in model.parameters():
            p.requires_grad_(False)
        return model.eval()

    return provide


def build(seed=0, **options):
    model = make_backbone("mlp", 10, (64,), seed=seed)
    ctx = StrategyContext(device=torch.device("cpu"), train=SETTINGS, seed=seed,
                          num_classes=10, source_provider=expert_provider(seed))
    spec = get_strategy("pnc")
    return spec.build(model, ctx, **spec.resolve(dict(FAST, **options)))


@pytest.fixture(scope="module")
def trained():
    """A PNC strategy trained through all 5 steps of split-digits, with per-step snapshots."""
    data = get_stream("split-digits").build(seed=0)
    strategy = build(0)
    hashes, snapshot, outputs = [], None, []
    x_all = data.inputs(torch.cat([x for x, _ in data.test]))
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
        acc = (net(trained["data"].inputs(x2)).argmax(1) == y2).float().mean().item()
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


def test_later_modules_keep_most_earlier_predictions(trained):
    """Locality by design: outputs on step-1 samples keep their predicted label."""
    data = trained["data"]
    n1 = len(data.test[0][0])
    first, last = trained["outputs"][0][:n1], trained["outputs"][-1][:n1]
    seen1 = data.classes_per_step[0]
    before = torch.tensor(seen1)[first[:, seen1].argmax(1)]
    assert (before == last.argmax(1)).float().mean().item() > 0.8


def test_every_later_step_clones_pruned_source_blocks(trained):
    reports = trained["strategy"].step_reports
    assert len(reports) == 5 and reports[0]["parameters_added"] == 0
    depth = len(trained["snapshot"].blocks)
    net = trained["strategy"].model
    for r in reports[1:]:
        assert r["cloned_blocks"] >= 1 and 0 <= r["position"] < depth
        assert set(r["position_scores"]) == {str(p) for p in range(depth)}
        assert r["position_reason"]
        assert r["pruned"] and 0 < r["kept_fraction"] < 1
        module = net.clones[str(r["step"])]
        full = sum(p.numel() for b in trained["snapshot"].blocks[r["position"]:]
                   for p in b.parameters())
        assert r["parameters_copied"] == sum(p.numel() for p in module.blocks.parameters())
        assert r["parameters_copied"] < full  # a partial clone costs less than the blocks
        assert r["parameters_added"] == sum(p.numel() for p in module.parameters())


def test_pnc_record_through_the_runner():
    exp = Experiment(strategies=["pnc"], seeds=[1], train={"epochs": 2},
                     strategy_options={"pnc": dict(FAST, positions="0,1")})
    record = execute_run(exp.run_configs()[0])
    assert record["status"] == "ok", record["error"]
    steps = record["steps"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    assert all(s["position"] in (0, 1) and s["cloned_blocks"] >= 1 for s in steps[1:])
    source = record["costs"]["source"]
    assert source["cached"][0] is None and all(c is not None for c in source["cached"][1:])
    assert record["metrics"]["final_accuracy"] > 0.5
    phases = {e["phase"] for e in steps[2]["loss_curve"]}
    assert {"localise", "insert@0", "insert@1", "refit"} <= phases


def test_pnc_in_plain_avalanche_code_without_a_provider():
    """From a user's own Avalanche code: generic experiences, PNC trains its own experts."""
    from avalanche.benchmarks.scenarios.dataset_scenario import DatasetExperience

    data = get_stream("split-digits").build(seed=2)
    model = make_backbone("mlp", 10, (64,), seed=2)
    strategy = PNC(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
                   train_mb_size=32, train_epochs=1, positions="1", localise_epochs=1)
    for exp in data.train_experiences()[:3]:
        plain = DatasetExperience(dataset=exp.dataset, current_experience=exp.current_experience)
        strategy.train(plain, eval_streams=[])
    assert strategy.model.steps == [2, 3]
    x, y = data.test[2]
    assert (strategy.predict_logits(data.inputs(x)).argmax(1) == y).float().mean() > 0.5


@pytest.mark.parametrize("options", [
    dict(routing="autoencoder"), dict(routing="gate", negatives="mixing"),
    dict(routing="gate", negatives="inversion", inversion_steps=3, inversion_samples=4),
    dict(routing="none")])
def test_every_routing_keeps_the_target_intact_and_removable(options):
    data = get_stream("split-digits").build(seed=3)
    strategy = build(3, positions="1", **options)
    hashes = []
    for exp in data.train_experiences()[:3]:
        strategy.train(exp, eval_streams=[])
        hashes.append(state_hash(strategy.model.target))
    net = strategy.model
    assert len(set(hashes)) == 1 and net.steps == [2, 3]
    x = data.inputs(data.test[0][0])
    with torch.no_grad():
        out = net(x)
    assert torch.isfinite(out[:, sum(data.classes_per_step[:3], [])]).all()
    net.remove(2), net.remove(3)
    with torch.no_grad():
        assert torch.equal(net(x), net.target(x))


def test_bad_pnc_options_are_refused():
    from benchmark.core.errors import UsageError

    spec = get_strategy("pnc")
    with pytest.raises(UsageError, match="routing"):
        spec.resolve({"routing": "magic"})
    model = make_backbone("mlp", 10, (64,), seed=0)
    with pytest.raises(UsageError, match="positions"):
        PNC(model=model, optimizer=torch.optim.Adam(model.parameters()), positions="7")
    with pytest.raises(UsageError, match="allow_empty"):
        PNC(model=model, optimizer=torch.optim.Adam(model.parameters()), positions="2")
