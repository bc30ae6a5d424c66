"""The memory-matched comparison: buffer rivals get PNC's extra bytes as their budget, on the
same stream and seed."""
from __future__ import annotations

import json

from helpers import run_cli

from benchmark.core.models import make_backbone
from benchmark.run.matching import backbone_bytes, extra_bytes, matched_configs
from benchmark.run.plan import Experiment
from strategies.base import module_bytes


def test_extra_bytes_are_model_bytes_beyond_the_backbone_plus_state():
    record = {"costs": {"model_bytes": [100, 900], "state_bytes": [0, 40]}}
    assert extra_bytes(record, backbone=100) == 840


def test_matched_configs_take_the_budget_of_the_same_seed():
    configs = Experiment(strategies=["pnc", "replay", "finetune"], seeds=[0, 1],
                         train={"epochs": 1}).run_configs()
    pnc = {c.seed: c for c in configs if c.strategy == "pnc"}
    backbone = module_bytes(make_backbone("mlp", 10, (64,), seed=0))
    assert backbone_bytes(pnc[0]) == backbone
    records = {pnc[0].key: {"status": "ok", "costs": {"model_bytes": [backbone + 5000],
                                                       "state_bytes": [7]}}}
    matched, missing = matched_configs(configs, "pnc", records)
    assert [(c.strategy, c.seed, c.memory_match, c.hparams["memory_bytes"]) for c in matched] \
        == [("replay", 0, "pnc", 5007)]
    assert missing == ["replay seed 1 on split-digits: no finished pnc run to match"]
    assert matched[0].key != next(c.key for c in configs if c.strategy == "replay")


def test_a_memory_matched_experiment_end_to_end(tmp_path):
    config = tmp_path / "mm.toml"
    config.write_text('strategies = ["pnc", "replay"]\nseeds = [0]\nmatch_memory = "pnc"\n'
                      '[train]\nepochs = 1\n[strategy.pnc]\nrouting = "autoencoder"\n')
    out = tmp_path / "out"
    result = run_cli(["run", "--config", config, "--out", out, "--quiet"])
    assert result.code == 0, result.err
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    pnc = next(r for r in records if r["config"]["strategy"] == "pnc")
    matched = next(r for r in records if r["config"].get("memory_match") == "pnc")
    budget = extra_bytes(pnc, module_bytes(make_backbone("mlp", 10, (64,), seed=0)))
    assert matched["config"]["hparams"]["memory_bytes"] == budget
    assert max(matched["costs"]["state_bytes"]) <= budget
    labels = (out / "tables" / "summary.csv").read_text()
    assert "replay[memory_match=pnc]" in labels
    assert "\nsplit-digits,split-digits,class-incremental,replay,replay," in labels


def test_match_memory_must_name_a_strategy_of_the_experiment(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('strategies = ["replay"]\nseeds = [0]\nmatch_memory = "pnc"\n')
    result = run_cli(["run", "--config", config, "--out", tmp_path / "out"])
    assert result.code == 2 and "match_memory names 'pnc'" in result.err
    assert not (tmp_path / "out").exists()


def test_matching_is_opt_in_and_auto_follows_pnc_when_a_buffer_rival_runs():
    assert Experiment(strategies=["pnc", "replay"]).matched_to is None
    assert Experiment(strategies=["pnc", "replay"], match_memory="auto").matched_to == "pnc"
    assert Experiment(strategies=["pnc", "slda"], match_memory="auto").matched_to is None
    assert Experiment(strategies=["replay", "der"], match_memory="auto").matched_to is None
