"""Tidy tables from run records: one row per run, per run and step, and per stream x strategy.

Accuracies, forgetting, BWT and locality are fractions in [0, 1]. A strategy run with several
configurations in one folder (e.g. two EWC lambdas) gets one label per configuration, e.g.
``ewc[ewc_lambda=10]``.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from benchmark.core.metrics import (
    COSTS,
    METRIC_NAMES,
    METRICS,
    average_accuracy,
    new_accuracy,
    old_accuracy,
)
from benchmark.report import stats

BASELINE = "pnc"
SUMMARY_METRICS = METRICS + COSTS
RUN_ID_COLUMNS = ["key", "stream", "strategy", "label", "reference", "seed", "status", "error",
                  "epochs", "device", "hparams"]


def is_reference(strategy: str) -> bool:
    """True for a registered reference strategy (the upper bound); unknown names are rivals."""
    from strategies import STRATEGIES

    return strategy in STRATEGIES and STRATEGIES[strategy].reference


# ---------------------------------------------------------------- tidy tables from records


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = json.dumps(v, sort_keys=True)
    return out


def variant_labels(records: Sequence[dict]) -> dict[str, str]:
    """Run key -> label: the strategy name, with ``[option=value, ...]`` appended (the config
    entries that differ) when one stream holds several configurations of that strategy."""
    groups: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for r in records:
        cfg = r["config"]
        ident = _flatten({k: v for k, v in cfg.items() if k != "seed"})
        groups.setdefault((cfg["stream"], cfg["strategy"]), {})[r["key"]] = ident
    labels = {}
    for (_, strategy), by_key in groups.items():
        distinct = {json.dumps(v, sort_keys=True) for v in by_key.values()}
        if len(distinct) == 1:
            labels.update(dict.fromkeys(by_key, strategy))
            continue
        names = sorted({n for ident in by_key.values() for n in ident})
        differing = [n for n in names if len({i.get(n) for i in by_key.values()}) > 1]
        for key, ident in by_key.items():
            parts = [f"{n.split('.')[-1]}={json.loads(ident[n]) if n in ident else None}"
                     for n in differing]
            labels[key] = f"{strategy}[{', '.join(parts)}]"
    return labels


def _sum_or_nan(values) -> float:
    vals = [v for v in (values or []) if v is not None]
    return float(sum(vals)) if vals else np.nan


def runs_table(records: list[dict]) -> pd.DataFrame:
    """One row per run: identity, status, every metric of the record, and costs
    (``parameters`` after the last step, ``seconds`` of training summed over steps,
    ``source_seconds`` spent obtaining sources, ``peak_memory_mb`` over steps)."""
    labels = variant_labels(records)
    extra_metrics = sorted({m for r in records for m in r["metrics"]} - set(METRIC_NAMES))
    metric_cols = [*METRIC_NAMES, *extra_metrics]
    rows = []
    for r in records:
        cfg = r["config"]
        costs = r.get("costs") or {}
        source = costs.get("source") or {}
        params = costs.get("parameters") or []
        memory = [v for v in costs.get("peak_memory_mb") or [] if v is not None]
        row = {"key": r["key"], "stream": cfg["stream"], "strategy": cfg["strategy"],
               "label": labels[r["key"]], "reference": is_reference(cfg["strategy"]),
               "seed": cfg["seed"], "status": r["status"], "error": r.get("error"),
               "epochs": cfg.get("epochs"), "device": cfg.get("device"),
               "hparams": json.dumps(cfg.get("hparams", {}), sort_keys=True)}
        row.update({m: r["metrics"].get(m) for m in metric_cols})
        row["parameters"] = params[-1] if params and params[-1] is not None else np.nan
        row["seconds"] = _sum_or_nan(costs.get("seconds"))
        row["source_seconds"] = _sum_or_nan(source.get("provider_seconds"))
        row["peak_memory_mb"] = max(memory) if memory else np.nan
        row["total_seconds"] = costs.get("total_seconds", np.nan)
        rows.append(row)
    cols = [*RUN_ID_COLUMNS, *metric_cols, "parameters", "seconds", "source_seconds",
            "peak_memory_mb", "total_seconds"]
    table = pd.DataFrame(rows, columns=cols)
    for c in [*metric_cols, "parameters", "seconds", "source_seconds", "peak_memory_mb",
              "total_seconds"]:
        table[c] = pd.to_numeric(table[c], errors="coerce").astype(float)
    table["reference"] = table["reference"].astype(bool)
    return table.sort_values(["stream", "label", "seed"], kind="stable").reset_index(drop=True)


def steps_table(records: list[dict]) -> pd.DataFrame:
    """One row per successful run and step k (1-based): A_k, L_k (NaN at step 1), old accuracy
    (mean over experiences < k; NaN at step 1) and new accuracy a[k][k]."""
    labels = variant_labels(records)
    rows = []
    for r in records:
        if r["status"] != "ok" or not r["accuracy_matrix"]:
            continue
        a = r["accuracy_matrix"]
        loc = r["step_locality"]
        for k in range(len(a)):
            old = old_accuracy(a, k)
            rows.append({"stream": r["config"]["stream"], "label": labels[r["key"]],
                         "seed": r["config"]["seed"], "step": k + 1,
                         "accuracy": average_accuracy(a, k),
                         "locality": np.nan if k >= len(loc) or loc[k] is None else loc[k],
                         "old_accuracy": np.nan if old is None else old,
                         "new_accuracy": new_accuracy(a, k)})
    cols = ["stream", "label", "seed", "step", "accuracy", "locality", "old_accuracy",
            "new_accuracy"]
    return pd.DataFrame(rows, columns=cols)


def strategy_order(labels: Iterable[str], reference: dict[str, bool]) -> list[str]:
    """Reference strategies first, then ``pnc`` (and its variants), then the rest by name."""
    return sorted(set(labels), key=lambda s: (not reference.get(s, False),
                                              s.split("[")[0] != BASELINE, s))


def summary_table(runs: pd.DataFrame, confidence: float = stats.CONFIDENCE) -> pd.DataFrame:
    """Per stream x strategy label over successful runs: ``n`` (ok runs), ``n_failed``, and per
    metric ``<m>_mean``, ``<m>_std``, ``<m>_ci_low``, ``<m>_ci_high`` (Student-t interval;
    NaN for fewer than 2 values) and ``<m>_n`` (finite values)."""
    cols = ["stream", "strategy", "label", "reference", "n", "n_failed", "seeds"]
    cols += [f"{m.name}_{s}" for m in SUMMARY_METRICS
             for s in ("mean", "std", "ci_low", "ci_high", "n")]
    rows = []
    reference = dict(zip(runs["label"], runs["reference"]))
    for stream in sorted(runs["stream"].unique()):
        in_stream = runs[runs["stream"] == stream]
        for label in strategy_order(in_stream["label"], reference):
            group = in_stream[in_stream["label"] == label]
            ok = group[group["status"] == "ok"]
            row = {"stream": stream, "strategy": group["strategy"].iloc[0], "label": label,
                   "reference": bool(reference[label]), "n": len(ok),
                   "n_failed": int((group["status"] != "ok").sum()),
                   "seeds": " ".join(str(s) for s in sorted(ok["seed"]))}
            for m in SUMMARY_METRICS:
                ci = stats.t_interval(ok[m.name], confidence)
                row.update({f"{m.name}_mean": ci.mean, f"{m.name}_std": ci.std,
                            f"{m.name}_ci_low": ci.low, f"{m.name}_ci_high": ci.high,
                            f"{m.name}_n": ci.n})
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)


