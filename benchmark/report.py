"""Tables from the records alone: ``tables/runs.csv`` (one row per run) and
``tables/summary.csv`` (per stream x strategy: mean and std over seeds)."""
from __future__ import annotations

from pathlib import Path
from typing import List

import pandas as pd

from benchmark.store import METRIC_NAMES, ResultsStore


def runs_table(records: List[dict]) -> pd.DataFrame:
    """One row per run: identity, status and every metric."""
    rows = []
    for r in records:
        cfg = r["config"]
        costs = r.get("costs", {})
        row = {"key": r["key"], "stream": cfg["stream"], "strategy": cfg["strategy"],
               "seed": cfg["seed"], "status": r["status"], "error": r.get("error")}
        row.update({m: r["metrics"].get(m) for m in METRIC_NAMES})
        row["parameters"] = (costs.get("parameters") or [None])[-1]
        row["seconds"] = sum(costs.get("seconds") or []) or None
        rows.append(row)
    cols = ["key", "stream", "strategy", "seed", "status", "error", *METRIC_NAMES,
            "parameters", "seconds"]
    return pd.DataFrame(rows, columns=cols).sort_values(["stream", "strategy", "seed"])


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per stream x strategy over successful runs: ``<metric>_mean``, ``<metric>_std`` and n."""
    ok = runs[runs["status"] == "ok"]
    values = [*METRIC_NAMES, "parameters", "seconds"]
    grouped = ok.groupby(["stream", "strategy"], sort=True)[values]
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=1).add_suffix("_std")
    n = grouped.size().rename("n")
    table = pd.concat([n, mean, std], axis=1)
    order = ["n"] + [f"{v}_{s}" for v in values for s in ("mean", "std")]
    return table[order].reset_index()


def build_report(root: Path, quiet: bool = False) -> Path:
    """Rebuilds the tables of a results folder from its records."""
    root = Path(root)
    store = ResultsStore(root).check()
    records = list(store.records())
    tables = root / "tables"
    tables.mkdir(exist_ok=True)
    runs = runs_table(records)
    runs.to_csv(tables / "runs.csv", index=False)
    summary_table(runs).to_csv(tables / "summary.csv", index=False)
    return tables
