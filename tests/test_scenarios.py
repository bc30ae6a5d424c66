"""Scenarios (docs/design.md, "Scenarios"): each one's protocol, stated as tests on the data it
hands the strategies, and the refusals of the plan."""
from __future__ import annotations

import json

import pytest
import torch
from helpers import run_cli

from benchmark.data import get_stream
from benchmark.run.plan import Experiment
from benchmark.run.runner import execute_run
from benchmark.scenarios import apply_scenario, resolve_scenario
from strategies import STRATEGIES


def built(scenario: dict, seed: int = 0):
    return apply_scenario(resolve_scenario(scenario), get_stream("split-digits").build(
        seed=seed), seed)


@pytest.mark.parametrize("base_memory", [0, 720, 5000])
@pytest.mark.parametrize("shots", [10, "all"])
def test_cloning_gives_no_base_sample_beyond_base_memory(base_memory, shots):
    for seed in (0, 3):
        data = built({"name": "cloning", "base_memory": base_memory, "shots": shots}, seed)
        base = set(data.classes_per_step[0])
        seen = sum(int(torch.isin(y, torch.tensor(sorted(base))).sum())
                   for _, y in data.train)
        assert seen * data.sample_bytes <= base_memory
        assert seen == base_memory // data.sample_bytes  # all of the allowed budget, no more
        experiences = data.train_experiences()
        assert experiences[0].pretrained and not any(e.pretrained for e in experiences[1:])
        # the target learnt every base training sample, none of another class
        assert set(data.pretrain[1].tolist()) == base


def test_cloning_sources_never_saw_the_base_classes_and_clones_are_partial():
    data = built({"name": "cloning", "acts": 2, "base": 4, "source_classes": 3, "clone": 2,
                  "shots": 7})
    base = set(data.classes_per_step[0])
    assert data.sources[0] is None
    known = set()
    for k, (classes, _, y) in enumerate(data.sources[1:], start=1):
        assert not set(classes) & base and not set(y.tolist()) & base
        assert not set(classes) & known  # each act's source knows its own classes
        known |= set(classes)
        assert set(data.classes_per_step[k]) < set(classes)  # a part of what it knows
        labels = data.train[k][1]
        assert sorted(set(labels.tolist())) == sorted(data.classes_per_step[k])
        assert all(int((labels == c).sum()) == 7 for c in data.classes_per_step[k])
        assert set(data.test[k][1].tolist()) == set(data.classes_per_step[k])


@pytest.mark.parametrize("domain", ["rotation", "permutation", "contrast"])
def test_domain_incremental_steps_share_one_label_set(domain):
    data = built({"name": "domain-incremental", "domain": domain, "n_domains": 4})
    classes = set(range(10))
    assert data.n_steps == 4
    assert all(set(c) == classes for c in data.classes_per_step)
    assert all(set(y.tolist()) == classes for _, y in data.train + data.test)
    raw = get_stream("split-digits").build(seed=0)
    test_pool = torch.cat([x for x, _ in raw.test])
    assert torch.equal(data.test[0][0], test_pool)  # domain 1 is the data as they are
    assert not torch.equal(data.test[1][0], test_pool)  # the others are not
    assert data.test[1][0].dtype == torch.uint8  # stored form kept
    # every training sample is used once, in one domain
    assert sum(len(y) for _, y in data.train) == sum(len(y) for _, y in raw.train)


def test_mixed_steps_bring_known_and_new_classes():
    data = built({"name": "mixed", "revisit": 0.5})
    new = data.classes_per_step
    trained = data.training_classes
    assert any(set(t) & {c for step in new[:k] for c in step} and set(t) & set(new[k])
               for k, t in enumerate(trained))
    for k in range(1, data.n_steps):
        present = set(data.train[k][1].tolist())
        assert present == set(new[k]) | set(new[k - 1]) == set(trained[k])
    assert [sorted(set(y.tolist())) for _, y in data.test] == [sorted(c) for c in new]
    raw = get_stream("split-digits").build(seed=0)
    assert sum(len(y) for _, y in data.train) == sum(len(y) for _, y in raw.train)


def test_each_strategy_declares_its_scenarios():
    for name, spec in STRATEGIES.items():
        assert "class-incremental" in spec.scenarios, name
    assert "cloning" not in STRATEGIES["joint"].scenarios  # it would need the base data
    assert "cloning" in STRATEGIES["pnc"].scenarios


def test_an_unsupported_pair_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "results"
    result = run_cli(["run", "--scenario", "cloning", "--strategies", "finetune,joint",
                      "--seeds", "0", "--epochs", "1", "--out", out, "--quiet"])
    assert result.code == 2 and result.err.count("\n") == 1
    assert "joint" in result.err and "cloning" in result.err
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--scenario", "sideways"], ["sideways", "scenario"]),
    (["--scenario", "cloning", "--scenario-option", "shots=0"], ["shots"]),
    (["--scenario", "cloning", "--scenario-option", "base=9"], ["impossible cloning"]),
    (["--scenario", "mixed", "--scenario-option", "colour=red"], ["colour"]),
    (["--scenario", "domain-incremental", "--scenario-option", "noequals"],
     ["--scenario-option"]),
])
def test_bad_scenarios_exit_2_with_one_line(tmp_path, args, words):
    out = tmp_path / "results"
    result = run_cli(["run", "--strategies", "finetune", "--seeds", "0", "--epochs", "1",
                      "--out", out, "--quiet", *args])
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    for word in words:
        assert word in result.err, (word, result.err)
    assert not out.exists()


def test_default_strategies_are_those_that_support_the_scenario():
    exp = Experiment(scenario={"name": "cloning"}, seeds=[0])
    planned = exp.planned_strategies()
    assert "joint" not in planned and "pnc" in planned
    assert all("cloning" in STRATEGIES[s].scenarios for s in planned)


def test_scenario_from_an_experiment_file_runs_and_is_recorded(tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text('name = "cl"\nstrategies = ["finetune", "lwf"]\nseeds = [0]\n'
                      '[train]\nepochs = 1\n[scenario]\nname = "cloning"\nshots = 5\n'
                      'base_memory = 720\n')
    out = tmp_path / "out"
    result = run_cli(["run", "--config", config, "--out", out, "--quiet"])
    assert result.code == 0, result.err
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(records) == 2
    for r in records:
        assert r["config"]["scenario"]["name"] == "cloning"
        assert r["config"]["scenario"]["shots"] == 5
        assert r["costs"]["pretrained_target"]["seconds"] is None or \
            r["costs"]["pretrained_target"]["seconds"] >= 0
        assert len(r["accuracy_matrix"]) == 2
        assert r["metrics"]["base_accuracy"] == r["accuracy_matrix"][1][0]
    first = {r["config"]["strategy"]: r["accuracy_matrix"][0][0] for r in records}
    assert first["finetune"] == first["lwf"]  # both start from the same pre-trained target
    summary = (out / "tables" / "summary.csv").read_text()
    assert "split-digits / cloning" in summary


def test_pnc_keeps_the_pretrained_target_bitwise_and_routes_without_base_data():
    exp = Experiment(strategies=["pnc", "finetune"], seeds=[0], train={"epochs": 1},
                     scenario={"name": "cloning"})
    records = {c.strategy: execute_run(c) for c in exp.run_configs()}
    pnc, finetune = records["pnc"], records["finetune"]
    assert pnc["status"] == "ok", pnc["error"]
    assert pnc["steps"][0]["router_inputs"] == "synthesised"
    assert pnc["steps"][0]["trainable_parameters"] == 0
    assert pnc["accuracy_matrix"][0][0] == finetune["accuracy_matrix"][0][0]


def test_pnc_clones_into_the_pretrained_target_without_changing_it():
    from helpers import state_hash

    from benchmark.run.plan import ExecOptions
    from benchmark.run.protocol import identity, run_setting
    from benchmark.run.sources import pretrained_target
    from strategies import StrategyContext, get_strategy

    cfg = Experiment(strategies=["pnc"], seeds=[0], train={"epochs": 1},
                     scenario={"name": "cloning"}).run_configs()[0]
    data, device, settings, model, theta0 = run_setting(cfg, ExecOptions())
    pretrained_target(model, theta0, settings, identity(cfg), data.pretrain, data.decode,
                      None, None)
    target_hash = state_hash(model)
    x = data.inputs(data.test[0][0][:64])
    with torch.no_grad():
        before = model.eval()(x).clone()
    ctx = StrategyContext(device=device, train=settings, seed=0,
                          num_classes=10, source_provider=None, initial_state=theta0)
    pnc = get_strategy("pnc").build(model, ctx, **cfg.hparams)
    for experience in data.train_experiences():
        pnc.train(experience, eval_streams=[])
    net = pnc.model
    assert state_hash(net.target) == target_hash  # bitwise, BatchNorm statistics included
    assert net.steps == [2]
    net.remove(2)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), before)


def test_a_wider_source_than_the_target_is_cloned_through_the_adapter():
    """``source_backbone``: the zoo's sources are another architecture (here twice as wide as
    the target); PNC's adapter maps the target's features to the source's, and the record says
    which backbone the sources had."""
    exp = Experiment(strategies=["pnc"], seeds=[0], train={"epochs": 1},
                     scenario={"name": "cloning", "source_backbone": "mlp:hidden=256-256"})
    (cfg,) = exp.run_configs()
    record = execute_run(cfg)
    assert record["status"] == "ok", record["error"]
    assert record["config"]["source"]["backbone"] == "mlp:hidden=256-256"
    assert record["config"]["backbone"] == "mlp"
    (step,) = record["steps"][1:]
    assert step["module_bytes"] > 0 and step["position"] is not None
