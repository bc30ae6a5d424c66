"""The self-contained HTML report of a results folder.

One file: inline CSS, figures embedded as ``data:image/png;base64`` URIs, no scripts and no
reference to anything outside the file, so it opens in any browser with no server. Every text
taken from records is HTML-escaped. ``render`` only formats what ``benchmark.report.build``
computed.
"""
from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1320px; padding: 0 16px; color: #1d2330; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #d8dde6; padding-bottom: 4px; margin-top: 1.8em; }
h3 { margin-bottom: 0.3em; }
nav a { margin-right: 14px; color: #2750a8; text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.86em; }
th, td { border: 1px solid #d8dde6; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #eef1f6; }
td.text, th.text { text-align: left; }
tr.reference td { color: #5b6475; font-style: italic; background: #f6f7f9; }
td.best { font-weight: bold; background: #dff3e3; }
.tag { font-size: 0.75em; background: #5b6475; color: white; border-radius: 3px;
       padding: 1px 5px; font-style: normal; margin-left: 4px; }
.note { color: #5b6475; font-size: 0.88em; }
.verdict { font-weight: bold; padding: 6px 10px; border-radius: 4px; display: inline-block; }
.verdict.yes { background: #dff3e3; } .verdict.no { background: #fbe3e3; }
.verdict.undefined { background: #fff4d6; }
figure { margin: 12px 0 28px; }
figure img { max-width: 100%; border: 1px solid #d8dde6; }
figcaption { color: #5b6475; font-size: 0.88em; }
pre { background: #f6f7f9; padding: 10px; overflow-x: auto; font-size: 0.82em; }
.error { color: #a11; font-family: monospace; text-align: left; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def num(value, digits: int = 3, scale: float = 1.0) -> str:
    """A number for display; an em dash for NaN / None."""
    if value is None or (is_number(value) and not math.isfinite(value)):
        return "—"
    return f"{scale * float(value):.{digits}f}"


def pval(value) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return "&lt;0.001" if value < 0.001 else f"{value:.3f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], text_columns=1,
          row_classes: Optional[Sequence[str]] = None,
          cell_classes: Optional[Sequence[Sequence[str]]] = None) -> str:
    """An HTML table from already-escaped cell strings; ``text_columns`` (the first n columns,
    or a set of column indices) are left-aligned, the others right-aligned."""
    rows = list(rows)
    left = set(range(text_columns)) if isinstance(text_columns, int) else set(text_columns)
    head = "".join(f'<th class="text">{h}</th>' if i in left else f"<th>{h}</th>"
                   for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = []
        for i, cell in enumerate(row):
            names = ["text"] if i in left else []
            if cell_classes and cell_classes[r][i]:
                names.append(cell_classes[r][i])
            attr = f' class="{" ".join(names)}"' if names else ""
            cells.append(f"<td{attr}>{cell}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def section_overview(runs: pd.DataFrame) -> str:
    ok = runs[runs["status"] == "ok"]
    return (f"<p>{len(runs)} runs: {len(ok)} successful, {len(runs) - len(ok)} failed. "
            f"Streams: {esc(', '.join(sorted(runs['stream'].unique())) or 'none')}. "
            f"Strategies: {esc(', '.join(sorted(runs['label'].unique())) or 'none')}. "
            f"Seeds: {esc(' '.join(str(s) for s in sorted(runs['seed'].unique())) or 'none')}."
            "</p>")


def section_configuration(runs: pd.DataFrame, experiment: Optional[dict], note: str) -> str:
    parts = ['<h2>Configuration</h2>']
    if experiment is not None:
        parts.append("<h3>experiment.json</h3>")
        parts.append(f"<pre>{esc(json.dumps(experiment, indent=1, sort_keys=True))}</pre>")
    if note:
        parts.append(f'<p class="note">{esc(note)}</p>')
    parts.append("<h3>Per strategy, from the records</h3>")
    rows = []
    for (stream, label), group in runs.groupby(["stream", "label"], sort=True):
        rows.append([esc(stream), esc(label),
                     esc(" ".join(str(s) for s in sorted(group["seed"]))),
                     esc(", ".join(sorted({str(e) for e in group["epochs"]}))),
                     esc(", ".join(sorted({str(d) for d in group["device"]}))),
                     esc(", ".join(sorted(set(group["hparams"]))))])
    parts.append(table(["stream", "strategy", "seeds", "epochs", "device", "hyper-parameters"],
                       rows, text_columns=6))
    return "\n".join(parts)


def section_summary(summary: pd.DataFrame, display: pd.DataFrame, best: pd.DataFrame,
                    metric_names: Sequence[str], note: str) -> str:
    parts = ['<h2>Summary</h2>', f'<p class="note">{esc(note)}</p>']
    if summary.empty:
        parts.append("<p>No runs.</p>")
        return "\n".join(parts)
    headers = [esc(c) for c in display.columns if c != "Stream"]
    for stream in summary["stream"].unique():
        idx = summary.index[summary["stream"] == stream]
        parts.append(f"<h3>{esc(stream)}</h3>")
        rows, row_cls, cell_cls = [], [], []
        for i in idx:
            d = display.loc[i]
            ref = bool(summary.loc[i, "reference"])
            name = esc(summary.loc[i, "label"])
            if ref:
                name += '<span class="tag">reference: upper bound</span>'
            rows.append([name, esc(d["n"]), *[esc(d[c]) for c in display.columns[3:]]])
            row_cls.append("reference" if ref else "")
            cell_cls.append(["", "", *["best" if best.loc[i, m] else "" for m in metric_names]])
        parts.append(table(headers, rows, 1, row_cls, cell_cls))
    return "\n".join(parts)


def section_claim(claims: pd.DataFrame, claimed_points: float, claimed_gain: float) -> str:
    parts = ['<h2>Paper-claim check</h2>',
             f"<p>The paper reports that PNC beats parameter-tuning methods by about "
             f"{claimed_points:+g} points of final accuracy and about {100 * claimed_gain:+g}% "
             "locality. Here PNC is compared, per stream and paired by seed, with the best of "
             "finetune, EWC and LwF (the highest mean final accuracy A_T): the accuracy "
             "difference 100 (A_T<sup>pnc</sup> − A_T<sup>best</sup>) with its 95% t-interval, "
             "and the relative locality gain (L<sup>pnc</sup> − L<sup>best</sup>) / "
             "L<sup>best</sup> of the mean step locality, with Fieller's 95% interval. A claim is "
             "supported when the interval lies above 0 and does not lie entirely below the "
             "claimed value.</p>"]
    if claims.empty:
        parts.append('<p class="verdict undefined">No runs: nothing to check.</p>')
        return "\n".join(parts)
    for _, c in claims.iterrows():
        parts.append(f"<h3>{esc(c['stream'])}</h3>")
        if not isinstance(c.get("pnc"), str):
            parts.append(f'<p class="verdict undefined">Cannot be checked: {esc(c["reason"])}.'
                         "</p>")
            continue
        rows = [
            ["accuracy difference (points)", num(c["accuracy_difference_points"], 2),
             f"[{num(c['accuracy_difference_low'], 2)}, {num(c['accuracy_difference_high'], 2)}]",
             f"{claimed_points:+g}", esc(c["accuracy_verdict"])],
            ["relative locality gain (%)", num(c["locality_gain"], 1, 100),
             f"[{num(c['locality_gain_low'], 1, 100)}, {num(c['locality_gain_high'], 1, 100)}]",
             f"{100 * claimed_gain:+g}", esc(c["locality_verdict"])],
        ]
        parts.append(f"<p>{esc(c['pnc'])} against <b>{esc(c['best_parameter_tuning'])}</b> "
                     f"(best of: {esc(c['candidates'])}), {int(c['n_pairs'])} paired seeds; "
                     f"mean locality L: {num(c['locality_pnc'], 1, 100)}% against "
                     f"{num(c['locality_best'], 1, 100)}%.</p>")
        parts.append(table(["quantity", "estimate", "95% interval", "claimed", "verdict"], rows,
                           text_columns={0, 4}))
        if c.get("reason"):
            parts.append(f'<p class="note">Undefined parts: {esc(c["reason"])}.</p>')
        supports = c["supports_claim"]
        if supports is True or supports == 1.0:
            parts.append('<p class="verdict yes">On this stream the measurement supports the '
                         "paper's claim (both accuracy and locality).</p>")
        elif supports is False or supports == 0.0:
            parts.append('<p class="verdict no">On this stream the measurement does not support '
                         "the paper's claim.</p>")
        else:
            parts.append('<p class="verdict undefined">On this stream the claim cannot be fully '
                         "checked (see the undefined parts); nothing measured contradicts it."
                         "</p>")
    return "\n".join(parts)


def _fraction_metric(metric: str, units: dict) -> bool:
    return units.get(metric, "fraction") == "fraction"


HTML_TEST_METRICS = ("final_accuracy", "average_incremental_accuracy", "forgetting", "bwt",
                     "locality", "original_locality")


def favours(row) -> str:
    """Which side the mean paired difference (pnc - strategy) favours, given the direction."""
    d = row["mean_difference"]
    if not is_number(d) or not math.isfinite(d):
        return "—"
    if abs(d) <= 1e-12:
        return "tie"
    return "pnc" if (d > 0) == bool(row["higher_is_better"]) else esc(row["strategy"])


def section_tests(tests: pd.DataFrame, ranks: pd.DataFrame, units: dict) -> str:
    parts = ['<h2>Statistical tests</h2>',
             '<p class="note">Every rival against pnc, paired by seed: difference = pnc − '
             "strategy (points for accuracy-like metrics), two-sided paired t-test and Wilcoxon "
             "signed-rank p-values, Holm-adjusted within each stream × metric family, and "
             "Cohen's d_z of the paired differences; “favours” reads the sign of the difference "
             "with the metric's direction, significant or not. — marks an undefined value; the "
             "note says why. Shown: "
             f"{esc(', '.join(HTML_TEST_METRICS))}; tables/tests.csv also holds the old, new "
             "and sample-weighted accuracy.</p>"]
    paired = tests[(tests["test"] == "paired") & tests["metric"].isin(HTML_TEST_METRICS)]
    if paired.empty:
        parts.append("<p>No paired comparisons (no rival strategies).</p>")
    for stream, group in paired.groupby("stream", sort=True):
        parts.append(f"<h3>{esc(stream)}</h3>")
        rows = []
        for _, t in group.iterrows():
            scale = 100 if _fraction_metric(t["metric"], units) else 1
            digits = 2 if scale == 100 else 3
            rows.append([esc(t["metric"]), esc(t["strategy"]), num(t["n"], 0),
                         num(t["mean_strategy"], digits, scale),
                         num(t["mean_baseline"], digits, scale),
                         num(t["mean_difference"], digits, scale), favours(t), pval(t["t_p"]),
                         pval(t["t_p_holm"]), pval(t["wilcoxon_p"]), pval(t["wilcoxon_p_holm"]),
                         num(t["effect_size_dz"], 2),
                         esc(t["reason"]) if isinstance(t["reason"], str) else ""])
        parts.append(table(["metric", "strategy", "n", "strategy mean", "pnc mean",
                            "pnc − strategy", "favours", "t p", "t p (Holm)", "Wilcoxon p",
                            "Wilcoxon p (Holm)", "d_z", "note"], rows,
                           text_columns={0, 1, 6, 12}))
    friedman = tests[tests["test"] == "friedman"]
    parts.append("<h3>Across streams: Friedman test and average ranks</h3>")
    if friedman.empty:
        parts.append('<p class="note">Needs results on several streams.</p>')
    else:
        rows = []
        for _, t in friedman.iterrows():
            r = ranks[ranks["metric"] == t["metric"]].sort_values("average_rank")
            ranking = ", ".join(f"{s} {v:.2f}" for s, v in zip(r["strategy"], r["average_rank"]))
            rows.append([esc(t["metric"]), num(t["n"], 0), num(t["friedman_chi2"], 2),
                         pval(t["friedman_p"]), num(t["nemenyi_cd"], 2), esc(ranking),
                         esc(t["reason"]) if isinstance(t["reason"], str) else ""])
        parts.append(table(["metric", "streams", "χ²", "p", "Nemenyi CD (α 0.05)",
                            "average ranks (1 = best)", "note"], rows,
                           text_columns={0, 5, 6}))
    return "\n".join(parts)


def section_figures(charts) -> str:
    parts = ['<h2>Figures</h2>']
    if not charts:
        parts.append("<p>No successful runs: no figures.</p>")
    for chart in charts:
        data = base64.b64encode(chart.png).decode("ascii")
        parts.append(f'<figure><img alt="{esc(chart.title)}" src="data:image/png;base64,{data}">'
                     f"<figcaption><b>{esc(chart.title)}.</b> {esc(chart.caption)}</figcaption>"
                     "</figure>")
    return "\n".join(parts)


def section_failed(runs: pd.DataFrame) -> str:
    failed = runs[runs["status"] != "ok"]
    parts = ['<h2>Failed runs</h2>']
    if failed.empty:
        parts.append("<p>None.</p>")
        return "\n".join(parts)
    rows = [[esc(r["stream"]), esc(r["label"]), esc(r["seed"]), esc(r["key"]),
             f'<span class="error">{esc(r["error"])}</span>'] for _, r in failed.iterrows()]
    parts.append(table(["stream", "strategy", "seed", "record", "error"], rows, text_columns=5))
    return "\n".join(parts)


def section_environment(environment: pd.DataFrame) -> str:
    parts = ['<h2>Environment</h2>',
             '<p class="note">As recorded by the runs (distinct values with run counts).</p>']
    rows = [[esc(r["field"]), esc(r["values"])] for _, r in environment.iterrows()]
    parts.append(table(["field", "value"], rows, text_columns=2) if rows else "<p>None.</p>")
    return "\n".join(parts)


@dataclass
class ReportContent:
    """Everything a report page shows, already computed (``benchmark.report.build``)."""

    root: Path
    runs: pd.DataFrame
    summary: pd.DataFrame
    display: pd.DataFrame
    best: pd.DataFrame
    display_metrics: Sequence[str]
    summary_note: str
    units: dict
    tests: pd.DataFrame
    ranks: pd.DataFrame
    claims: pd.DataFrame
    claimed_points: float
    claimed_gain: float
    charts: list
    experiment: Optional[dict]
    experiment_note: str
    environment: pd.DataFrame


def render(c: ReportContent) -> str:
    """The whole report page as one HTML string."""
    name = (c.experiment or {}).get("name") or Path(c.root).resolve().name
    sections = [
        ("overview", "", section_overview(c.runs)),
        ("configuration", "Configuration",
         section_configuration(c.runs, c.experiment, c.experiment_note)),
        ("summary", "Summary", section_summary(c.summary, c.display, c.best,
                                               list(c.display_metrics), c.summary_note)),
        ("claim", "Claim check", section_claim(c.claims, c.claimed_points, c.claimed_gain)),
        ("tests", "Tests", section_tests(c.tests, c.ranks, c.units)),
        ("figures", "Figures", section_figures(c.charts)),
        ("failed", "Failed runs", section_failed(c.runs)),
        ("environment", "Environment", section_environment(c.environment)),
    ]
    nav = " ".join(f'<a href="#{key}">{title}</a>' for key, title, _ in sections if title)
    body = "\n".join(f'<section id="{key}">\n{content}\n</section>'
                     for key, _, content in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>clonebench report: {esc(name)}</title><style>{CSS}</style></head><body>"
            f"<h1>clonebench report: {esc(name)}</h1><nav>{nav}</nav>\n{body}\n"
            "</body></html>\n")
