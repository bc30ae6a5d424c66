"""Tuning tables of a results folder whose runs were evaluated on validation data
(``clonebench tune``): every trial, and the configuration chosen per strategy."""
from __future__ import annotations

import json

import pandas as pd

from benchmark.core.metrics import METRIC_NAMES

CHOICE_METRIC = "final_accuracy"


def label(options: dict) -> str:
    """A stable text form of a configuration (sorted JSON)."""
    return json.dumps(options, sort_keys=True)


def trials_table(records: list[dict]) -> pd.DataFrame:
    """One row per tuning run: stream, strategy, options (JSON), seed, split, status, metrics."""
    rows = []
    for r in records:
        cfg = r["config"]
        rows.append({"stream": cfg["stream"], "strategy": cfg["strategy"],
                     "options": label(cfg["hparams"]), "seed": cfg["seed"],
                     "split": cfg.get("split", "test"), "status": r["status"],
                     **{m: r["metrics"].get(m) for m in METRIC_NAMES}})
    return pd.DataFrame(rows, columns=["stream", "strategy", "options", "seed", "split",
                                       "status", *METRIC_NAMES])


def choices_table(trials_df: pd.DataFrame, metric: str = CHOICE_METRIC) -> pd.DataFrame:
    """Per stream and strategy: the configuration with the best mean ``metric`` over seeds
    (ties: the strategy's defaults, then the first configuration in sorted order)."""
    from strategies import STRATEGIES  # the registry's defaults (imported by tuning folders only)

    ok = trials_df[trials_df["status"] == "ok"]
    rows = []
    for (stream, strategy), group in ok.groupby(["stream", "strategy"], sort=True):
        means = group.groupby("options")[metric].mean()
        n_seeds = group.groupby("options")["seed"].nunique()
        defaults = label(STRATEGIES.get(strategy).resolve({})) \
            if strategy in STRATEGIES else None
        best_value = means.max()
        tied = sorted(means.index[means == best_value])
        chosen = next((o for o in tied if o == defaults), tied[0])
        default_score = float(means[defaults]) if defaults in means.index else float("nan")
        rows.append({"stream": stream, "strategy": strategy, "chosen": chosen,
                     f"{metric}_mean": float(best_value), "seeds": int(n_seeds[chosen]),
                     "trials": len(means), "defaults": defaults,
                     "defaults_score": default_score, "split": "validation"})
    return pd.DataFrame(rows, columns=["stream", "strategy", "chosen", f"{metric}_mean",
                                       "seeds", "trials", "defaults", "defaults_score",
                                       "split"])
