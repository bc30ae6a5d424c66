"""``clonebench tune``: validation carved from training data, never the test split; the same
trial budget for every strategy; tuning seeds disjoint from reported ones."""
from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch
from helpers import run_cli

from benchmark.core.errors import UsageError
from benchmark.data import STREAMS
from benchmark.run.plan import ExecOptions
from benchmark.tune.spaces import SPACES, grid, space_for, trials
from benchmark.tune.sweep import parse_grid, plan_trials, run_tuning
from strategies import STRATEGIES


def test_parse_grid_types_each_value_with_its_option():
    assert parse_grid(["ewc.ewc_lambda=1,10", "ewc.mode=online"]) == {
        "ewc": {"ewc_lambda": [1.0, 10.0], "mode": ["online"]}}
    for bad in ("nonsense", "ewc.ewc_lambda", "ewc.nope=1", "ewc.ewc_lambda=-1"):
        with pytest.raises(UsageError):
            parse_grid([bad])


def test_every_strategy_gets_the_same_budget_and_keeps_its_defaults_in_play():
    space = {"a": [1, 2, 3], "b": [True, False]}
    chosen = trials(space, {"a": 2, "b": False}, budget=4)
    assert len(chosen) == 4 and {"a": 2, "b": False} in chosen
    assert len({tuple(sorted(c.items())) for c in chosen}) == 4
    assert trials({"a": [1, 2]}, {"a": 1}, budget=6) == grid({"a": [1, 2]})
    plan = plan_trials(["finetune", "ewc", "lwf"], 6, {})
    assert plan["finetune"] == [{}] and len(plan["ewc"]) == 6 and len(plan["lwf"]) == 6
    with pytest.raises(UsageError, match="pnc's options"):
        plan_trials(["pnc-oracle"], 6, {})


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_built_in_grid_names_declared_options_with_valid_values(name):
    spec = STRATEGIES[name]
    space = space_for(name, spec.resolve({}))
    combos = grid(space)
    assert len(combos) >= 2  # a grid with one point tunes nothing
    declared = {o.name for o in spec.options}
    for combo in combos:
        assert set(combo) <= declared
        assert spec.resolve(combo) == {**spec.resolve({}), **combo}  # every value is valid


def test_tuning_refuses_reported_seeds(tmp_path):
    with pytest.raises(UsageError, match="reported seed"):
        run_tuning("split-digits", ["finetune"], [3], 1, 0.2, tmp_path / "t", {},
                   {"epochs": 1}, ExecOptions())


def tune_ewc(out):
    return run_tuning("split-digits", ["ewc"], [100], 2, 0.2, out,
                      {"ewc": {"ewc_lambda": [1.0, 10000.0]}}, {"epochs": 1}, ExecOptions())


def test_tuning_never_reads_the_test_split(tmp_path, monkeypatch):
    honest = tune_ewc(tmp_path / "honest")
    spec = STREAMS["split-digits"]
    build = spec.build

    def garbage_tests(**kwargs):
        data = build(**kwargs)
        data.test = [(torch.randint_like(x, 0, 17), torch.randint_like(y, 0, 10))
                     for x, y in data.test]
        return data

    monkeypatch.setitem(STREAMS._entries, "split-digits",
                        dataclasses.replace(spec, build=garbage_tests))
    garbled = tune_ewc(tmp_path / "garbage")
    pd.testing.assert_frame_equal(garbled, honest)
    a = pd.read_csv(tmp_path / "honest" / "tables" / "trials.csv")
    b = pd.read_csv(tmp_path / "garbage" / "tables" / "trials.csv")
    assert (a["split"] == "validation").all()
    pd.testing.assert_frame_equal(a, b)


def test_cli_tune_prints_and_writes_the_choices(tmp_path):
    out = tmp_path / "tuning"
    result = run_cli(["tune", "--strategies", "finetune,lwf", "--grid", "lwf.alpha=0.5,2",
                      "finetune.lr_scale=1.0", "--seeds", "100", "--epochs", "1", "--out", out])
    assert result.code == 0, result.err
    assert "split-digits lwf: {" in result.out and "validation A_T" in result.out
    choices = pd.read_csv(out / "tables" / "choices.csv")
    assert set(choices["strategy"]) == {"finetune", "lwf"}
    assert (choices["split"] == "validation").all()
    trials_df = pd.read_csv(out / "tables" / "trials.csv")
    assert len(trials_df) == 3 and set(trials_df["split"]) == {"validation"}
    bad = run_cli(["tune", "--strategies", "lwf", "--seeds", "0", "--out", tmp_path / "x"])
    assert bad.code == 2 and "reported seed" in bad.err


def test_tuning_from_an_experiment_file_keeps_its_backbone_and_stream_options(tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text('stream = "split-digits"\n[backbone]\nsplit-digits = "cnn"\n'
                      '[stream_options.split-digits]\nn_experiences = 2\n')
    result = run_cli(["tune", "--config", config, "--strategies", "finetune", "--seeds", "100",
                      "--epochs", "1", "--out", tmp_path / "t"])
    assert result.code != 0  # cnn does not take split-digits' 64 flat features
    assert "backbone 'cnn'" in result.err
    config.write_text('stream = "split-digits"\n[stream_options.split-digits]\n'
                      'n_experiences = 2\n')
    result = run_cli(["tune", "--config", config, "--strategies", "finetune", "--seeds", "100",
                      "--grid", "finetune.lr_scale=1.0", "--epochs", "1", "--out", tmp_path / "t"])
    assert result.code == 0, result.err
    trials_df = pd.read_csv(tmp_path / "t" / "tables" / "trials.csv")
    record = json.loads(next((tmp_path / "t" / "runs").glob("*.json")).read_text())
    assert record["config"]["stream_options"] == {"n_experiences": 2}
    assert len(trials_df) == 1
