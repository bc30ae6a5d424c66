"""The committed reference results are what the README says they are: the default experiment
with every registered strategy on 10 seeds, intervals inside the metrics' ranges, and tuning
results on validation data whose choices are the strategies' current defaults."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmark.report.tuning import label
from benchmark.run.plan import DEFAULT_SEEDS
from strategies import STRATEGIES

RESULTS = Path(__file__).resolve().parent.parent / "results"
BOUNDED = ("final_accuracy", "average_incremental_accuracy", "locality", "original_locality",
           "old_accuracy", "new_accuracy")


def summary(folder: str) -> pd.DataFrame:
    path = RESULTS / folder / "tables" / "summary.csv"
    if not path.exists():
        pytest.skip(f"{path} is not committed in this checkout")
    return pd.read_csv(path)


def test_the_default_experiment_holds_every_strategy_on_ten_seeds():
    table = summary("default")
    assert set(table["strategy"]) == set(STRATEGIES.names())
    assert (table["n"] == len(DEFAULT_SEEDS)).all() and (table["n_failed"] == 0).all()
    assert set(table["label"]) == set(table["strategy"])  # no stale configurations


@pytest.mark.parametrize("folder", ["default", "memory-matched", "pretrained-source",
                                    "fashion-mnist"])
def test_no_interval_leaves_its_metric_range(folder):
    table = summary(folder)
    for metric in BOUNDED:
        low, high = table[f"{metric}_ci_low"].dropna(), table[f"{metric}_ci_high"].dropna()
        assert (low >= 0).all() and (high <= 1).all(), metric
    assert (table["forgetting_ci_low"].dropna() >= -1).all()
    assert (table["forgetting_ci_high"].dropna() <= 1).all()


def test_tuning_ran_on_validation_and_chose_the_current_defaults():
    path = RESULTS / "tuning" / "split-digits" / "tables"
    if not path.exists():
        pytest.skip("results/tuning is not committed in this checkout")
    trials = pd.read_csv(path / "trials.csv")
    assert set(trials["split"]) == {"validation"}
    assert not set(trials["seed"]) & set(DEFAULT_SEEDS)
    choices = pd.read_csv(path / "choices.csv")
    for _, row in choices.iterrows():
        defaults = label(STRATEGIES.get(row["strategy"]).resolve({}))
        assert json.loads(row["chosen"]) == json.loads(defaults), row["strategy"]


SCENARIO_FOLDERS = {"cloning": "cloning", "domain": "domain-incremental",
                    "mixed": "mixed"}


@pytest.mark.parametrize("folder, scenario", sorted(SCENARIO_FOLDERS.items()))
def test_each_scenario_folder_holds_every_supporting_strategy_on_five_seeds_or_more(
        folder, scenario):
    table = summary(folder)
    supporting = {n for n in STRATEGIES.names() if scenario in STRATEGIES[n].scenarios}
    assert set(table["scenario"]) == {scenario}
    assert supporting <= set(table["strategy"])
    assert (table["n"] >= 5).all() and (table["n_failed"] == 0).all()
    for metric in BOUNDED:
        low, high = table[f"{metric}_ci_low"].dropna(), table[f"{metric}_ci_high"].dropna()
        assert (low >= 0).all() and (high <= 1).all(), (folder, metric)


def test_cloning_covers_both_streams_and_both_shot_counts():
    table = summary("cloning")
    assert set(table["dataset"]) == {"split-digits", "split-fashion-mnist"}
    assert table["stream"].str.contains("shots=10").any()
    assert table["stream"].str.contains("shots=all").any()


def test_dynamic_expansion_distils_in_its_own_setting():
    """In results/domain, and in its own comparison, dynamic expansion takes the distillation
    path on at least one step of every seed where it is set to (records' step decisions)."""
    from benchmark.run.store import ResultsStore

    for folder in ("domain", "dynamic-expansion"):
        if not (RESULTS / folder / "runs").is_dir():
            pytest.skip(f"results/{folder} is not committed in this checkout")
        records = [r for r in ResultsStore(RESULTS / folder).records()
                   if r["config"]["strategy"] == "dynamic-expansion"]
        never = [r for r in records if r["config"]["hparams"]["expansion"] == "never"]
        assert never, folder
        for r in never:
            decisions = [s["decision"] for s in r["steps"]]
            assert decisions[0] == "initial" and set(decisions[1:]) == {"distil"}, folder


def test_the_fashion_cnn_grid_holds_every_strategy_and_fits_the_budget():
    """Every strategy, memory-matched rivals included, on 5 seeds, within 2 cores x 45 minutes
    of training and source seconds. (Joint's A_T there is below the 0.88 of the MLP: no CNN
    setting tried that fits the budget reaches it on validation data; docs/tuning.md.)"""
    table = summary("fashion-mnist-cnn")
    assert set(STRATEGIES.names()) <= set(table["strategy"])
    assert table["label"].str.contains("memory_match=pnc").any()
    assert (table["n"] >= 5).all() and (table["n_failed"] == 0).all()
    runs = pd.read_csv(RESULTS / "fashion-mnist-cnn" / "tables" / "runs.csv")
    assert (runs["status"] == "ok").all()
    spent = runs["seconds"].sum() + runs["source_seconds"].fillna(0).sum()
    assert spent <= 2 * 45 * 60  # two cores for 45 minutes
