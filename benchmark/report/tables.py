"""Tidy tables from run records: one row per run, per run and step, per run, step and training
epoch, and per setting x strategy.

A *setting* is what the runs of a comparison share: the stream and its options, the scenario
and its options, the backbone and the split evaluated (runs trained with other settings, e.g.
epochs, are variants of their strategy within a setting). Every table
groups by it, in its column ``stream``: the stream's name, followed by `` / <scenario>`` when
the scenario is not class-incremental, and by the options that tell them apart in parentheses
when a folder holds several settings of one stream (e.g. ``split-digits / cloning (shots=10)``).
The stream's own name is in ``dataset``, the scenario in ``scenario``, the split in ``split``.

Accuracies, forgetting, BWT and locality are fractions in [0, 1]; memory in bytes. A strategy
run with several configurations in one folder (e.g. two EWC lambdas) gets one label per
configuration naming only what differs, each option once, e.g. ``ewc[ewc_lambda=10]``.
A strategy's role (``rival``, ``reference``, ``ablation``) and family come from its records'
``strategy_info``, or from the strategy registry for records written before they carried it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Optional

import numpy as np
import pandas as pd

from benchmark.core.metrics import (
    ALL_METRIC_NAMES,
    COSTS,
    METRICS,
    average_accuracy,
    new_accuracy,
    old_accuracy,
)
from benchmark.report import stats

BASELINE = "pnc"
SUMMARY_METRICS = METRICS + COSTS
RUN_ID_COLUMNS = ["key", "stream", "dataset", "scenario", "backbone", "split", "source",
                  "strategy",
                  "label", "role", "family", "note", "reference", "seed", "status", "error",
                  "epochs", "device", "hparams"]
# The configuration entries that make a setting (the rest belongs to a strategy's variant).
SETTING_FIELDS = ("stream", "stream_options", "scenario", "backbone", "evaluation", "split",
                  "data_version")
DEFAULT_SCENARIO = "class-incremental"
COST_COLUMNS = ["parameters", "model_bytes", "state_bytes", "total_bytes", "seconds",
                "source_seconds", "peak_memory_mb", "total_seconds"]


def strategy_info(record: dict) -> dict:
    """``role``, ``family`` and ``note`` of a record's strategy: from the record's
    ``strategy_info``, else from the registry; an unknown name is a rival of no family."""
    info = record.get("strategy_info") or {}
    if not info.get("role"):
        from strategies import STRATEGIES

        name = record["config"]["strategy"]
        info = STRATEGIES[name].info() if name in STRATEGIES else {}
    return {"role": info.get("role") or "rival", "family": info.get("family") or "",
            "note": info.get("note") or ""}


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


def _label_parts(by_key: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    """(shown name, config entry) for every entry that differs between configurations; entries
    sharing a last name (``epochs`` and ``train.epochs``) are shown once by that name when they
    agree in every configuration, else each by its full dotted name."""
    idents = list(by_key.values())
    names = sorted({n for ident in idents for n in ident})
    differing = [n for n in names if len({i.get(n) for i in idents}) > 1]
    by_short: dict[str, list[str]] = {}
    for name in differing:
        by_short.setdefault(name.split(".")[-1], []).append(name)
    parts = []
    for short, group in by_short.items():
        redundant = all(len({i.get(n) for n in group}) == 1 for i in idents)
        parts += [(short, group[0])] if redundant else [(n, n) for n in group]
    return parts


def scenario_of(config: dict) -> dict:
    """A record configuration's scenario block (records written before scenarios existed ran
    the class-incremental one)."""
    return config.get("scenario") or {"name": DEFAULT_SCENARIO}


def source_name(source: Optional[dict]) -> str:
    """A run's source in a word: its provider (with the zoo's backbone when it differs), or
    empty for a strategy without one."""
    if not source:
        return ""
    backbone = source.get("backbone")
    return source["provider"] + (f" ({backbone})" if backbone else "")


def setting_labels(records: Sequence[dict]) -> dict[str, str]:
    """Run key -> the name of its setting (module docstring)."""
    by_stream: dict[str, dict[str, dict[str, str]]] = {}
    for r in records:
        cfg = dict(r["config"], scenario=scenario_of(r["config"]))
        ident = _flatten({k: cfg.get(k) for k in SETTING_FIELDS if k in cfg})
        by_stream.setdefault(cfg["stream"], {})[r["key"]] = ident
    labels = {}
    for stream, by_key in by_stream.items():
        parts = _label_parts(by_key)
        for key, ident in by_key.items():
            scenario = json.loads(ident["scenario.name"])
            name = stream if scenario == DEFAULT_SCENARIO else f"{stream} / {scenario}"
            shown = [f"{short}={json.loads(ident[n])}" for short, n in parts
                     if n in ident and short != "name" and json.loads(ident[n]) is not None]
            labels[key] = f"{name} ({', '.join(shown)})" if shown else name
    return labels


def variant_labels(records: Sequence[dict]) -> dict[str, str]:
    """Run key -> label: the strategy name, with ``[option=value, ...]`` appended (the config
    entries that differ, each once, those left unset (None) not shown) when one setting holds
    several configurations of that strategy. A memory-matched run's budget differs by seed
    (``memory_match``): its label names the match, not the budget."""
    settings = setting_labels(records)
    groups: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for r in records:
        cfg = r["config"]
        ident = _flatten({k: v for k, v in cfg.items()
                          if k != "seed" and k not in SETTING_FIELDS})
        if cfg.get("memory_match"):
            ident.pop("hparams.memory_bytes", None)
        groups.setdefault((settings[r["key"]], cfg["strategy"]), {})[r["key"]] = ident
    labels = {}
    for (_, strategy), by_key in groups.items():
        distinct = {json.dumps(v, sort_keys=True) for v in by_key.values()}
        if len(distinct) == 1:
            labels.update(dict.fromkeys(by_key, strategy))
            continue
        parts = _label_parts(by_key)
        for key, ident in by_key.items():
            values = [(short, json.loads(ident[n]) if n in ident else None)
                      for short, n in parts]
            shown = [f"{short}={value}" for short, value in values if value is not None]
            labels[key] = f"{strategy}[{', '.join(shown)}]" if shown else strategy
    return labels


def _sum_or_nan(values) -> float:
    vals = [v for v in (values or []) if v is not None]
    return float(sum(vals)) if vals else np.nan


def _last(values) -> float:
    """The last entry of a per-step list, NaN when absent or null."""
    return float(values[-1]) if values and values[-1] is not None else np.nan


def runs_table(records: list[dict], labels: Optional[dict[str, str]] = None,
               settings: Optional[dict[str, str]] = None) -> pd.DataFrame:
    """One row per run: its setting (``stream``, module docstring), the stream, scenario,
    backbone and split, identity and role, status, every metric of the record (NaN where an
    older record lacks one), and costs (``parameters``, ``model_bytes``, ``state_bytes`` and
    their sum ``total_bytes`` after the last step; ``seconds`` of training summed over steps,
    ``source_seconds`` spent obtaining sources, ``peak_memory_mb`` over steps)."""
    labels = labels if labels is not None else variant_labels(records)
    settings = settings if settings is not None else setting_labels(records)
    extra_metrics = sorted({m for r in records for m in r["metrics"]} - set(ALL_METRIC_NAMES))
    metric_cols = [*ALL_METRIC_NAMES, *extra_metrics]
    rows = []
    for r in records:
        cfg = r["config"]
        costs = r.get("costs") or {}
        source = costs.get("source") or {}
        memory = [v for v in costs.get("peak_memory_mb") or [] if v is not None]
        info = strategy_info(r)
        row = {"key": r["key"], "stream": settings[r["key"]], "dataset": cfg["stream"],
               "scenario": scenario_of(cfg)["name"], "backbone": cfg.get("backbone"),
               "split": cfg.get("split", "test"), "source": source_name(cfg.get("source")),
               "strategy": cfg["strategy"],
               "label": labels[r["key"]], **info, "reference": info["role"] == "reference",
               "seed": cfg["seed"], "status": r["status"], "error": r.get("error"),
               "epochs": cfg.get("epochs"), "device": cfg.get("device"),
               "hparams": json.dumps(cfg.get("hparams", {}), sort_keys=True)}
        row.update({m: r["metrics"].get(m) for m in metric_cols})
        row["parameters"] = _last(costs.get("parameters"))
        row["model_bytes"] = _last(costs.get("model_bytes"))
        row["state_bytes"] = _last(costs.get("state_bytes"))
        row["total_bytes"] = row["model_bytes"] + row["state_bytes"]
        row["seconds"] = _sum_or_nan(costs.get("seconds"))
        row["source_seconds"] = _sum_or_nan(source.get("provider_seconds"))
        row["peak_memory_mb"] = max(memory) if memory else np.nan
        row["total_seconds"] = costs.get("total_seconds", np.nan)
        rows.append(row)
    table = pd.DataFrame(rows, columns=[*RUN_ID_COLUMNS, *metric_cols, *COST_COLUMNS])
    for c in [*metric_cols, *COST_COLUMNS]:
        table[c] = pd.to_numeric(table[c], errors="coerce").astype(float)
    table["reference"] = table["reference"].astype(bool)
    return table.sort_values(["stream", "label", "seed"], kind="stable").reset_index(drop=True)


def steps_table(records: list[dict], labels: Optional[dict[str, str]] = None,
                settings: Optional[dict[str, str]] = None) -> pd.DataFrame:
    """One row per successful run and step k (1-based): A_k, L_k (NaN at step 1), old accuracy
    (mean over experiences < k; NaN at step 1) and new accuracy a[k][k]."""
    labels = labels if labels is not None else variant_labels(records)
    settings = settings if settings is not None else setting_labels(records)
    rows = []
    for r in records:
        if r["status"] != "ok" or not r["accuracy_matrix"]:
            continue
        a = r["accuracy_matrix"]
        loc = r["step_locality"]
        for k in range(len(a)):
            old = old_accuracy(a, k)
            rows.append({"stream": settings[r["key"]], "label": labels[r["key"]],
                         "seed": r["config"]["seed"], "step": k + 1,
                         "accuracy": average_accuracy(a, k),
                         "locality": np.nan if k >= len(loc) or loc[k] is None else loc[k],
                         "old_accuracy": np.nan if old is None else old,
                         "new_accuracy": new_accuracy(a, k)})
    cols = ["stream", "label", "seed", "step", "accuracy", "locality", "old_accuracy",
            "new_accuracy"]
    return pd.DataFrame(rows, columns=cols)


def loss_table(records: list[dict], labels: Optional[dict[str, str]] = None,
               settings: Optional[dict[str, str]] = None) -> pd.DataFrame:
    """One row per successful run, step k (1-based) and entry of the step's ``loss_curve``:
    ``index`` (its position within the step), ``phase``, ``epoch`` (1-based within the phase)
    and ``loss`` (the epoch's mean training loss). Empty for records without loss curves."""
    labels = labels if labels is not None else variant_labels(records)
    settings = settings if settings is not None else setting_labels(records)
    rows = []
    for r in records:
        if r["status"] != "ok":
            continue
        for k, step in enumerate(r.get("steps") or []):
            for i, point in enumerate((step or {}).get("loss_curve") or []):
                rows.append({"stream": settings[r["key"]], "label": labels[r["key"]],
                             "seed": r["config"]["seed"], "step": k + 1, "index": i,
                             "phase": str(point.get("phase", "train")),
                             "epoch": point.get("epoch"), "loss": point.get("loss")})
    table = pd.DataFrame(rows, columns=["stream", "label", "seed", "step", "index", "phase",
                                        "epoch", "loss"])
    table["loss"] = pd.to_numeric(table["loss"], errors="coerce").astype(float)
    return table


ROLE_ORDER = {"reference": 0, "rival": 1, "ablation": 2}


def strategy_order(labels: Iterable[str], roles: dict[str, str]) -> list[str]:
    """References first, then ``pnc`` (and its variants), its ablations, then the rivals by
    name. ``roles`` maps a label to its role (unknown labels are rivals)."""
    def key(label: str):
        role = roles.get(label, "rival")
        pnc_first = 0 if label.split("[")[0] == BASELINE else 1
        group = 0 if role == "reference" else (1 if pnc_first == 0 else
                                               (2 if role == "ablation" else 3))
        return group, label

    return sorted(set(labels), key=key)


def label_roles(runs: pd.DataFrame) -> dict[str, str]:
    """Label -> role over a runs table."""
    return dict(zip(runs["label"], runs["role"]))


def summary_table(runs: pd.DataFrame, confidence: float = stats.CONFIDENCE) -> pd.DataFrame:
    """Per stream x strategy label over successful runs: role, family and note, ``n`` (ok
    runs), ``n_failed``, and per metric and cost ``<m>_mean``, ``<m>_std``, ``<m>_ci_low``,
    ``<m>_ci_high`` (``stats.mean_interval``: expanded percentile bootstrap over seeds, within
    the observed values; NaN for fewer than 2 values) and ``<m>_n`` (finite values)."""
    cols = ["stream", "dataset", "scenario", "strategy", "label", "role", "family", "note",
            "reference", "n", "n_failed", "seeds"]
    cols += [f"{m.name}_{s}" for m in SUMMARY_METRICS
             for s in ("mean", "std", "ci_low", "ci_high", "n")]
    rows = []
    roles = label_roles(runs)
    for stream in sorted(runs["stream"].unique()):
        in_stream = runs[runs["stream"] == stream]
        for label in strategy_order(in_stream["label"], roles):
            group = in_stream[in_stream["label"] == label]
            ok = group[group["status"] == "ok"]
            first = group.iloc[0]
            row = {"stream": stream, "dataset": first["dataset"],
                   "scenario": first["scenario"], "strategy": first["strategy"], "label": label,
                   "role": first["role"], "family": first["family"], "note": first["note"],
                   "reference": first["role"] == "reference", "n": len(ok),
                   "n_failed": int((group["status"] != "ok").sum()),
                   "seeds": " ".join(str(s) for s in sorted(ok["seed"]))}
            for m in SUMMARY_METRICS:
                ci = stats.mean_interval(ok[m.name], confidence)
                row.update({f"{m.name}_mean": ci.mean, f"{m.name}_std": ci.std,
                            f"{m.name}_ci_low": ci.low, f"{m.name}_ci_high": ci.high,
                            f"{m.name}_n": ci.n})
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)
