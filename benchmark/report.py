"""Tables, statistics, figures and the HTML report of a results folder, from its records alone.

``build_report(DIR)`` reads every record under ``DIR/runs/`` (a corrupt one stops it with an
error naming the file, before anything is written) and writes, each file atomically:

- ``tables/runs.csv``: one row per run (failed ones included): identity, every metric of the
  record's ``metrics``, final parameter count, training seconds (sum over steps, source cost
  excluded), source seconds, peak memory;
- ``tables/steps.csv``: one row per successful run and step: A_k, L_k, old and new accuracy;
- ``tables/summary.csv|md|tex``: per stream x strategy over its successful runs: n and, for each
  metric, mean, std (ddof 1), 95% Student-t interval and the count of values; the reference
  strategy (registry ``reference=True``, e.g. ``joint``) first, marked as the upper bound and
  never a rival;
- ``tables/tests.csv``: every rival against ``pnc``, paired by seed (rows ``test=paired``), and,
  across several streams, a Friedman test per metric (rows ``test=friedman``);
- ``tables/ranks.csv``: average ranks over streams and the Nemenyi critical difference;
- ``tables/claim.csv``: the paper-claim check (PNC against the best of finetune / EWC / LwF);
- ``figures/*.png`` and the self-contained ``report.html``.

Accuracies, forgetting, BWT and locality are fractions in [0, 1] in the CSV files and points
(percent) in the Markdown, LaTeX and HTML tables. A strategy run with several configurations in
one folder (e.g. two EWC lambdas) gets one label per configuration, e.g. ``ewc[ewc_lambda=10]``.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from benchmark import stats
from benchmark.store import METRIC_NAMES, ResultsStore, atomic_write

BASELINE = "pnc"
PARAMETER_TUNING = ("finetune", "ewc", "lwf")
CLAIMED_POINTS = 5.0  # the paper: about +5 points of final accuracy over parameter tuning
CLAIMED_GAIN = 0.5  # the paper: about +50% locality over parameter tuning


@dataclass(frozen=True)
class Metric:
    """A summarised quantity: column name, display label, direction and unit.

    ``unit`` is ``fraction`` (stored in [0, 1], displayed in points), ``count`` or ``seconds``.
    """

    name: str
    label: str
    higher_is_better: bool
    unit: str = "fraction"


SUMMARY_METRICS = (
    Metric("final_accuracy", "A_T", True),
    Metric("average_incremental_accuracy", "AIA", True),
    Metric("forgetting", "Forgetting", False),
    Metric("bwt", "BWT", True),
    Metric("locality", "L", True),
    Metric("original_locality", "L_orig", True),
    Metric("old_accuracy", "Old acc.", True),
    Metric("new_accuracy", "New acc.", True),
    Metric("final_accuracy_weighted", "A_T weighted", True),
    Metric("parameters", "Params", False, "count"),
    Metric("seconds", "Train", False, "seconds"),
)
METRICS = {m.name: m for m in SUMMARY_METRICS}
DISPLAY_METRICS = tuple(m for m in SUMMARY_METRICS if m.name != "final_accuracy_weighted")
TESTED_METRICS = tuple(METRIC_NAMES)
RUN_ID_COLUMNS = ["key", "stream", "strategy", "label", "reference", "seed", "status", "error",
                  "epochs", "device", "hparams"]


def is_reference(strategy: str) -> bool:
    """True for a registered reference strategy (the upper bound); unknown names are rivals."""
    from strategies import STRATEGIES

    spec = STRATEGIES.get(strategy)
    return bool(spec is not None and spec.reference)


# ---------------------------------------------------------------- tidy tables from records


def _flatten(d: dict, prefix: str = "") -> Dict[str, str]:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = json.dumps(v, sort_keys=True)
    return out


def variant_labels(records: Sequence[dict]) -> Dict[str, str]:
    """Run key -> label: the strategy name, with ``[option=value, ...]`` appended (the config
    entries that differ) when one stream holds several configurations of that strategy."""
    groups: Dict[Tuple[str, str], Dict[str, Dict[str, str]]] = {}
    for r in records:
        cfg = r["config"]
        ident = _flatten({k: v for k, v in cfg.items() if k != "seed"})
        groups.setdefault((cfg["stream"], cfg["strategy"]), {})[r["key"]] = ident
    labels = {}
    for (_, strategy), by_key in groups.items():
        distinct = {json.dumps(v, sort_keys=True) for v in by_key.values()}
        if len(distinct) == 1:
            labels.update({key: strategy for key in by_key})
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


def runs_table(records: List[dict]) -> pd.DataFrame:
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


def steps_table(records: List[dict]) -> pd.DataFrame:
    """One row per successful run and step k (1-based): A_k, L_k (NaN at step 1), old accuracy
    (mean over experiences < k; NaN at step 1) and new accuracy a[k][k]."""
    from benchmark.metrics import average_accuracy, new_accuracy, old_accuracy

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


def strategy_order(labels: Iterable[str], reference: Dict[str, bool]) -> List[str]:
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


# ---------------------------------------------------------------- tests against pnc, Friedman


class SeedValues:
    """Metric values of successful runs by (stream, label), indexed by seed."""

    def __init__(self, runs: pd.DataFrame):
        ok = runs[runs["status"] == "ok"]
        numeric = [c for c in ok.columns if pd.api.types.is_float_dtype(ok[c])]
        self.groups = {key: g.groupby("seed")[numeric].mean()
                       for key, g in ok.groupby(["stream", "label"])}

    def __call__(self, stream: str, label: str, metric: str) -> pd.Series:
        group = self.groups.get((stream, label))
        if group is None or metric not in group:
            return pd.Series(dtype=float)
        return group[metric]


def _rivals(runs: pd.DataFrame, stream: str) -> List[str]:
    sub = runs[(runs["stream"] == stream) & ~runs["reference"]]
    reference = dict(zip(runs["label"], runs["reference"]))
    return [s for s in strategy_order(sub["label"], reference) if s.split("[")[0] != BASELINE]


def _baseline_label(runs: pd.DataFrame, stream: str) -> Tuple[Optional[str], str]:
    """The ``pnc`` label with successful runs on ``stream``, or None and the reason."""
    sub = runs[(runs["stream"] == stream) & (runs["strategy"] == BASELINE)]
    ok_labels = sorted(sub.loc[sub["status"] == "ok", "label"].unique())
    if not ok_labels:
        return None, f"{BASELINE} has no successful runs on {stream}"
    if len(ok_labels) > 1:
        return None, (f"{BASELINE} has {len(ok_labels)} configurations on {stream}; paired tests "
                      "need one")
    return ok_labels[0], ""


TEST_COLUMNS = ["test", "stream", "metric", "higher_is_better", "strategy", "baseline", "n",
                "mean_strategy", "mean_baseline", "mean_difference", "t_statistic", "t_p",
                "t_p_holm", "wilcoxon_statistic", "wilcoxon_p", "wilcoxon_p_holm",
                "effect_size_dz", "friedman_chi2", "friedman_p", "nemenyi_cd", "reason"]


def paired_tests(runs: pd.DataFrame, metrics: Sequence[str] = TESTED_METRICS) -> pd.DataFrame:
    """Every rival against ``pnc`` per stream and metric, paired by seed.

    ``mean_difference`` = mean over paired seeds of (pnc - strategy); ``effect_size_dz`` is
    Cohen's d_z of those differences; p-values are two-sided; ``*_holm`` are Holm-adjusted over
    the rivals of one stream x metric family. Undefined entries are NaN with a ``reason``.
    """
    rows = []
    by_seed = SeedValues(runs)
    for stream in sorted(runs["stream"].unique()):
        base, why = _baseline_label(runs, stream)
        rivals = _rivals(runs, stream)
        for metric in metrics:
            family = []
            for rival in rivals:
                y = by_seed(stream, rival, metric)
                row = {"test": "paired", "stream": stream, "metric": metric,
                       "higher_is_better": METRICS[metric].higher_is_better
                       if metric in METRICS else True,
                       "strategy": rival, "baseline": BASELINE}
                if base is None:
                    row.update(n=0, mean_strategy=stats.t_interval(y).mean, reason=why)
                else:
                    x = by_seed(stream, base, metric)
                    seeds = sorted(set(x.index) & set(y.index))
                    cmp = stats.paired_comparison(x.reindex(seeds).to_numpy(float),
                                                  y.reindex(seeds).to_numpy(float))
                    row.update(n=cmp.n, mean_strategy=cmp.mean_y, mean_baseline=cmp.mean_x,
                               mean_difference=cmp.mean_difference, t_statistic=cmp.t_statistic,
                               t_p=cmp.t_p, wilcoxon_statistic=cmp.wilcoxon_statistic,
                               wilcoxon_p=cmp.wilcoxon_p, effect_size_dz=cmp.effect_size_dz,
                               reason=cmp.reason)
                family.append(row)
            for p in ("t_p", "wilcoxon_p"):
                adjusted = stats.holm([r.get(p, np.nan) for r in family])
                for r, v in zip(family, adjusted):
                    r[f"{p}_holm"] = v
            rows.extend(family)
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def _stream_means(runs: pd.DataFrame, metric: str) -> Tuple[pd.DataFrame, List[str]]:
    """Streams x rival labels (pnc included, reference excluded) of mean metric values, keeping
    only labels with a value on every stream; and the labels dropped."""
    ok = runs[(runs["status"] == "ok") & ~runs["reference"]]
    table = ok.groupby(["stream", "label"])[metric].mean().unstack("label")
    complete = table.columns[table.notna().all(axis=0)]
    return table[complete], sorted(set(table.columns) - set(complete))


def friedman_tests(runs: pd.DataFrame, metrics: Sequence[str] = TESTED_METRICS,
                   alpha: float = 0.05) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Across several streams: per metric, a Friedman test over the rival strategies (blocks =
    streams, values = means over seeds) and the Nemenyi CD; and the average ranks (1 = best).

    Returns (rows for tests.csv, ranks table); both empty with fewer than 2 streams.
    """
    rank_cols = ["metric", "strategy", "average_rank", "n_streams", "nemenyi_cd"]
    if runs["stream"].nunique() < 2:
        return pd.DataFrame(columns=TEST_COLUMNS), pd.DataFrame(columns=rank_cols)
    rows, ranks = [], []
    for metric in metrics:
        table, dropped = _stream_means(runs, metric)
        n, k = table.shape
        higher = METRICS[metric].higher_is_better if metric in METRICS else True
        row = {"test": "friedman", "stream": "all streams", "metric": metric,
               "higher_is_better": higher, "strategy": ", ".join(table.columns), "n": n}
        reasons = []
        if dropped:
            reasons.append(f"left out (not on every stream): {', '.join(dropped)}")
        if n < 2 or k < 3:
            reasons.append("needs at least 3 strategies with values on at least 2 streams")
        else:
            chi2, p = stats.friedman(table.to_numpy())
            if not math.isfinite(chi2):
                reasons.append("every stream ties all strategies")
            cd = stats.nemenyi_cd(k, n, alpha)
            row.update(friedman_chi2=chi2, friedman_p=p, nemenyi_cd=cd)
            for label, rank in zip(table.columns, stats.average_ranks(table.to_numpy(), higher)):
                ranks.append({"metric": metric, "strategy": label, "average_rank": rank,
                              "n_streams": n, "nemenyi_cd": cd})
        row["reason"] = "; ".join(reasons)
        rows.append(row)
    return pd.DataFrame(rows, columns=TEST_COLUMNS), pd.DataFrame(ranks, columns=rank_cols)


def combine_tests(*parts: pd.DataFrame) -> pd.DataFrame:
    """Rows of several test tables as one ``tests.csv`` table."""
    parts = [t for t in parts if len(t)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TEST_COLUMNS)


# ---------------------------------------------------------------- the paper-claim check


def claim_verdict(low: float, high: float, claimed: float, unit: str) -> str:
    """Plain-language reading of a 95% interval [low, high] of PNC's gain against the claim."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undefined"
    if high < 0:
        return "contradicted: PNC is significantly worse"
    if low <= 0:
        return "not supported: no significant gain (the interval includes 0)"
    if high < claimed:
        return f"partly supported: a significant gain, but below the claimed {claimed:+g}{unit}"
    if low > claimed:
        return f"supported: the gain exceeds the claimed {claimed:+g}{unit}"
    return f"supported: the interval contains the claimed {claimed:+g}{unit}"


CLAIM_COLUMNS = ["stream", "pnc", "best_parameter_tuning", "candidates", "n_pairs",
                 "accuracy_difference_points", "accuracy_difference_low",
                 "accuracy_difference_high", "accuracy_verdict", "locality_pnc",
                 "locality_best", "locality_gain", "locality_gain_low", "locality_gain_high",
                 "locality_verdict", "supports_claim", "reason"]


def claim_table(runs: pd.DataFrame, confidence: float = stats.CONFIDENCE,
                claimed_points: float = CLAIMED_POINTS,
                claimed_gain: float = CLAIMED_GAIN) -> pd.DataFrame:
    """Per stream, PNC against the best parameter-tuning method (finetune / EWC / LwF, highest
    mean final accuracy over its successful runs), paired by seed:

    - accuracy difference in points, 100 (A_T^pnc - A_T^best), mean and t-interval;
    - relative locality gain (mean L^pnc - mean L^best) / mean L^best, with Fieller's interval
      for the ratio of paired means (minus 1).

    ``supports_claim`` is True when both verdicts read "supported", False when either is a
    defined verdict that is not, and NaN when undefined.
    """
    rows = []
    by_seed = SeedValues(runs)
    for stream in sorted(runs["stream"].unique()):
        row = {"stream": stream}
        base, why = _baseline_label(runs, stream)
        ok = runs[(runs["stream"] == stream) & (runs["status"] == "ok")]
        tuning = ok[ok["strategy"].isin(PARAMETER_TUNING)]
        cands = tuning.groupby("label")["final_accuracy"].mean().dropna()
        row["candidates"] = ", ".join(cands.index)
        if base is None or cands.empty:
            row["reason"] = why if base is None else (
                f"no successful finetune, ewc or lwf runs on {stream}")
            rows.append(row)
            continue
        best = cands.idxmax()
        row.update(pnc=base, best_parameter_tuning=best)
        acc_x, acc_y = (by_seed(stream, s, "final_accuracy") for s in (base, best))
        loc_x, loc_y = (by_seed(stream, s, "locality") for s in (base, best))
        seeds = sorted(set(acc_x.index) & set(acc_y.index))
        diff = stats.t_interval(100 * (acc_x.reindex(seeds) - acc_y.reindex(seeds)), confidence)
        ratio = stats.ratio_interval(loc_x.reindex(seeds).to_numpy(float),
                                     loc_y.reindex(seeds).to_numpy(float), confidence)
        reasons = []
        if diff.n < 2:
            reasons.append(f"accuracy: {diff.n} paired seed(s), an interval needs 2")
        if ratio.reason:
            reasons.append(f"locality: {ratio.reason}")
        acc_verdict = claim_verdict(diff.low, diff.high, claimed_points, " points")
        loc_verdict = claim_verdict(100 * (ratio.low - 1), 100 * (ratio.high - 1),
                                    100 * claimed_gain, "%")
        verdicts = (acc_verdict, loc_verdict)
        if any(v == "undefined" for v in verdicts):
            supports = np.nan if all(v == "undefined" or v.startswith("supported")
                                     for v in verdicts) else False
        else:
            supports = all(v.startswith("supported") for v in verdicts)
        row.update(n_pairs=len(seeds), accuracy_difference_points=diff.mean,
                   accuracy_difference_low=diff.low, accuracy_difference_high=diff.high,
                   accuracy_verdict=acc_verdict,
                   locality_pnc=float(loc_x.reindex(seeds).mean()) if seeds else np.nan,
                   locality_best=float(loc_y.reindex(seeds).mean()) if seeds else np.nan,
                   locality_gain=ratio.ratio - 1, locality_gain_low=ratio.low - 1,
                   locality_gain_high=ratio.high - 1, locality_verdict=loc_verdict,
                   supports_claim=supports, reason="; ".join(reasons))
        rows.append(row)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


# ---------------------------------------------------------------- display tables


def format_cell(mean: float, low: float, high: float, unit: str) -> str:
    """``mean ± half-width`` of a summary cell: fractions in points with one decimal, counts
    as integers, seconds with one decimal; an em dash when undefined."""
    if not math.isfinite(mean):
        return "—"
    scale, digits = (100.0, 1) if unit == "fraction" else (1.0, 0 if unit == "count" else 1)
    text = f"{scale * mean:,.{digits}f}"
    if math.isfinite(low) and math.isfinite(high):
        half = scale * (high - low) / 2
        if unit != "count" or half > 0:
            text += f" ± {half:,.{digits}f}"
    return text


def column_title(metric: Metric) -> str:
    unit = {"fraction": " (%)", "seconds": " (s)", "count": ""}[metric.unit]
    return f"{metric.label}{unit} {'↑' if metric.higher_is_better else '↓'}"


def best_mask(summary: pd.DataFrame, metrics: Sequence[Metric] = DISPLAY_METRICS
              ) -> pd.DataFrame:
    """True where a summary row holds the best mean of its stream's rivals for that metric
    (ties all marked; the reference is never marked; nothing is marked when fewer than 2 rivals
    have a value or when all of them tie)."""
    mask = pd.DataFrame(False, index=summary.index, columns=[m.name for m in metrics])
    for _, rows in summary.groupby("stream"):
        rivals = rows[~rows["reference"].astype(bool) & (rows["n"] > 0)]
        for m in metrics:
            values = rivals[f"{m.name}_mean"].astype(float)
            values = values[np.isfinite(values)]
            if len(values) < 2:
                continue
            best = values.max() if m.higher_is_better else values.min()
            is_best = np.isclose(values, best, rtol=0, atol=1e-12)
            if not is_best.all():
                mask.loc[values.index[is_best], m.name] = True
    return mask


def display_summary(summary: pd.DataFrame, metrics: Sequence[Metric] = DISPLAY_METRICS
                    ) -> pd.DataFrame:
    """The summary as display strings: Stream, Strategy (the reference tagged as the upper
    bound), n, then ``mean ± half-width`` per metric."""
    rows = []
    for _, r in summary.iterrows():
        row = {"Stream": r["stream"],
               "Strategy": f"{r['label']} (upper bound)" if r["reference"] else r["label"],
               "n": str(int(r["n"]))}
        for m in metrics:
            row[column_title(m)] = format_cell(r[f"{m.name}_mean"], r[f"{m.name}_ci_low"],
                                               r[f"{m.name}_ci_high"], m.unit)
        rows.append(row)
    return pd.DataFrame(rows, columns=["Stream", "Strategy", "n",
                                       *[column_title(m) for m in metrics]])


SUMMARY_NOTE = ("Mean ± half-width of the 95% Student-t interval over the n seeds of each "
                "strategy (no interval when n = 1). Accuracy, forgetting, BWT and locality in "
                "points (%); Params after the last step; Train = training seconds summed over "
                "steps (source cost excluded). ↑ higher is better, ↓ lower is better; the best "
                "rival per stream is marked in bold (the reference is an upper bound, not a "
                "rival, and is never marked).")


def summary_markdown(summary: pd.DataFrame) -> str:
    """``summary.md``: a note and one Markdown table, best rivals in bold."""
    shown = display_summary(summary)
    mask = best_mask(summary)
    for m in DISPLAY_METRICS:
        col = column_title(m)
        shown.loc[mask[m.name], col] = "**" + shown.loc[mask[m.name], col] + "**"
    table = shown.to_markdown(index=False) if len(shown) else "(no successful runs)"
    return f"# Summary\n\n{SUMMARY_NOTE}\n\n{table}\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}
_TEX_TITLES = {"A_T": "$A_T$", "L": "$L$", "L_orig": r"$L_{\mathrm{orig}}$"}


UP, DOWN = "$\\uparrow$", "$\\downarrow$"


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in str(text))


def _tex_title(m: Metric) -> str:
    unit = {"fraction": " (\\%)", "seconds": " (s)", "count": ""}[m.unit]
    return f"{_TEX_TITLES.get(m.label, tex_escape(m.label))}{unit} " \
           f"{UP if m.higher_is_better else DOWN}"


def summary_latex(summary: pd.DataFrame) -> str:
    """``summary.tex``: a booktabs table (needs ``\\usepackage{booktabs}``), best rivals bold."""
    shown = display_summary(summary)
    mask = best_mask(summary)
    heads = ["Stream", "Strategy", "$n$"] + [_tex_title(m) for m in DISPLAY_METRICS]
    caption = tex_escape(SUMMARY_NOTE).replace("↑", UP).replace("↓", DOWN).replace(
        "±", "$\\pm$")
    lines = ["% Generated by `clonebench report`; needs \\usepackage{booktabs}.",
             "\\begin{table}[t]", "\\centering", "\\small", f"\\caption{{{caption}}}",
             "\\begin{tabular}{ll" + "r" * (1 + len(DISPLAY_METRICS)) + "}", "\\toprule",
             " & ".join(heads) + " \\\\", "\\midrule"]
    previous = None
    for i, (_, row) in enumerate(shown.iterrows()):
        if previous is not None and row["Stream"] != previous:
            lines.append("\\midrule")
        previous = row["Stream"]
        cells = [tex_escape(row["Stream"]), tex_escape(row["Strategy"]), row["n"]]
        for m in DISPLAY_METRICS:
            cell = tex_escape(row[column_title(m)]).replace("±", "$\\pm$").replace("—", "--")
            cells.append(f"\\textbf{{{cell}}}" if mask.iloc[i][m.name] else cell)
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\label{tab:clonebench-summary}",
              "\\end{table}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- building the report


def mean_accuracy_matrices(records: Sequence[dict]) -> Dict[str, Dict[str, np.ndarray]]:
    """Stream -> label -> mean over successful seeds of the accuracy matrix (NaN above the
    diagonal); runs whose matrix shape differs from the label's most common one are left out."""
    from benchmark.metrics import as_matrix

    labels = variant_labels(records)
    groups: Dict[Tuple[str, str], List[np.ndarray]] = {}
    for r in records:
        if r["status"] == "ok" and r["accuracy_matrix"]:
            groups.setdefault((r["config"]["stream"], labels[r["key"]]), []).append(
                as_matrix(r["accuracy_matrix"]))
    out: Dict[str, Dict[str, np.ndarray]] = {}
    for (stream, label), mats in groups.items():
        shapes = pd.Series([m.shape for m in mats]).value_counts()
        common = [m for m in mats if m.shape == shapes.index[0]]
        stacked = np.stack(common)
        mean = np.full(stacked.shape[1:], np.nan)
        defined = np.isfinite(stacked).any(axis=0)
        mean[defined] = np.nanmean(stacked[:, defined], axis=0)
        out.setdefault(stream, {})[label] = mean
    return out


def environment_table(records: Sequence[dict]) -> pd.DataFrame:
    """Each environment field of the records with its distinct values (most frequent first)
    and how many runs had each."""
    rows = []
    fields = sorted({k for r in records for k in (r.get("environment") or {})})
    for name in fields:
        values = pd.Series([str((r.get("environment") or {}).get(name)) for r in records])
        counts = values.value_counts()
        rows.append({"field": name, "values": "; ".join(
            v if len(counts) == 1 else f"{v} ({c} runs)" for v, c in counts.items())})
    return pd.DataFrame(rows, columns=["field", "values"])


def read_experiment(root: Path) -> Tuple[Optional[dict], str]:
    """``experiment.json`` of a results folder (or None) and a note when it is absent or
    unreadable (the report is then built from the records alone)."""
    path = Path(root) / "experiment.json"
    if not path.exists():
        return None, "no experiment.json in the folder: configuration from the records only"
    try:
        return json.loads(path.read_text()), ""
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"experiment.json unreadable ({err.__class__.__name__}): ignored"


def _csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, float_format="%.10g")


def build_report(root: Path, quiet: bool = False) -> Path:
    """Rebuilds the tables, figures and ``report.html`` of a results folder from its records;
    returns the path of ``report.html``.

    Every record is read and validated first: a corrupt or foreign file raises
    ``RecordError`` naming it and nothing is written. Unless ``quiet``, one line on stderr notes
    what could not be computed (no pnc runs, failed runs).
    """
    from benchmark import figures, html_report

    root = Path(root)
    store = ResultsStore(root).check()
    records = list(store.records())
    runs = runs_table(records)
    steps = steps_table(records)
    summary = summary_table(runs)
    paired = paired_tests(runs)
    friedman_rows, ranks = friedman_tests(runs)
    tests = combine_tests(paired, friedman_rows)
    claims = claim_table(runs)
    reference = dict(zip(runs["label"], runs["reference"]))
    order = strategy_order(runs["label"], reference)
    charts = figures.all_charts(summary, steps, mean_accuracy_matrices(records), ranks, order,
                                reference)
    experiment, experiment_note = read_experiment(root)
    page = html_report.render(
        root=root, runs=runs, summary=summary, tests=tests, ranks=ranks, claims=claims,
        charts=charts, experiment=experiment, experiment_note=experiment_note,
        environment=environment_table(records))

    tables = root / "tables"
    tables.mkdir(exist_ok=True)
    atomic_write(tables / "runs.csv", _csv(runs))
    atomic_write(tables / "steps.csv", _csv(steps))
    atomic_write(tables / "summary.csv", _csv(summary))
    atomic_write(tables / "summary.md", summary_markdown(summary))
    atomic_write(tables / "summary.tex", summary_latex(summary))
    atomic_write(tables / "tests.csv", _csv(tests))
    atomic_write(tables / "ranks.csv", _csv(ranks))
    atomic_write(tables / "claim.csv", _csv(claims))
    fig_dir = root / "figures"
    fig_dir.mkdir(exist_ok=True)
    for chart in charts:
        atomic_write(fig_dir / chart.name, chart.png)
    current = {c.name for c in charts}
    for stale in fig_dir.glob("*.png"):
        if stale.name not in current:
            stale.unlink()
    report = root / "report.html"
    atomic_write(report, page)
    if not quiet:
        notes = []
        failed = int((runs["status"] != "ok").sum())
        if failed:
            notes.append(f"{failed} failed run(s) listed in the report")
        if len(runs) and not (runs["strategy"] == BASELINE).any():
            notes.append(f"no {BASELINE} runs: tests against {BASELINE} and the claim check "
                         "are undefined")
        if notes:
            print(f"report: {'; '.join(notes)}", file=sys.stderr)
    return report
