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
