"""The self-contained HTML report of a results folder.

One file: inline CSS, figures embedded as ``data:image/png;base64`` URIs, no scripts and no
reference to anything outside the file, so it opens in any browser with no server. Every text
taken from records is HTML-escaped. ``render`` only formats what ``benchmark.report.build``
computed; the sections on the claim, the ablations and the tests are in ``page_stats``.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from benchmark.report.formats import role_tag
from benchmark.report.htmlkit import CSS, esc, table
from benchmark.report.page_stats import section_ablations, section_claim, section_tests
from benchmark.report.pnc_clones import CLONE_COLUMNS, section_clones


def section_overview(runs: pd.DataFrame) -> str:
    ok = runs[runs["status"] == "ok"]
    return (f"<p>{len(runs)} runs: {len(ok)} successful, {len(runs) - len(ok)} failed. "
            f"Streams: {esc(', '.join(sorted(runs['stream'].unique())) or 'none')}. "
            f"Strategies: {esc(', '.join(sorted(runs['label'].unique())) or 'none')}. "
            f"Seeds: {esc(' '.join(str(s) for s in sorted(runs['seed'].unique())) or 'none')}."
            "</p>")


def compact(value) -> str:
    """A configuration value in a few words: lists joined by commas, mappings as
    ``key=value`` pairs (nested ones in parentheses), no JSON punctuation."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={compact(v) if not isinstance(v, dict) else f'({compact(v)})'}"
                         for k, v in sorted(value.items())) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(compact(v) for v in value) or "—"
    return "—" if value is None else str(value)


def section_configuration(runs: pd.DataFrame, experiment: Optional[dict], note: str) -> str:
    parts = ['<h2>Configuration</h2>']
    if note:
        parts.append(f'<p class="note">{esc(note)}</p>')
    if experiment is not None:
        rows = [[esc(k), esc(compact(v))] for k, v in sorted(experiment.items())]
        parts.append("<details><summary>The experiment (experiment.json)</summary>"
                     f"{table(['setting', 'value'], rows, text_columns=2)}</details>")
    rows = []
    for (stream, label), group in runs.groupby(["stream", "label"], sort=True):
        first = group.iloc[0]
        settings = sorted({compact(json.loads(h)) for h in group["hparams"]})
        rows.append([esc(stream), esc(label),
                     esc(role_tag(first["role"], first["note"] if isinstance(first["note"], str)
                                  else "") or "rival"),
                     esc(" ".join(str(s) for s in sorted(group["seed"]))),
                     esc(", ".join(sorted({str(e) for e in group["epochs"]}))),
                     esc(", ".join(sorted({str(d) for d in group["device"]}))),
                     esc("; ".join(settings))])
    parts.append("<details><summary>Per strategy, from the records "
                 f"({len(rows)} stream × strategy)</summary>"
                 + table(["stream", "strategy", "role", "seeds", "epochs", "device",
                          "hyper-parameters"], rows, text_columns=7) + "</details>")
    return "\n".join(parts)


def section_summary(summary: pd.DataFrame, display: pd.DataFrame, best: pd.DataFrame,
                    metric_names: Sequence[str], note: str) -> str:
    parts = ['<h2>Summary</h2>', f'<p class="note">{esc(note)}</p>']
    if summary.empty:
        parts.append("<p>No runs.</p>")
        return "\n".join(parts)
    headers = [esc(c) for c in display.columns if c != "Stream"]
    headers[0] = "Strategy"
    for stream in summary["stream"].unique():
        idx = summary.index[summary["stream"] == stream]
        parts.append(f"<h3>{esc(stream)}</h3>")
        rows, row_cls, cell_cls = [], [], []
        for i in idx:
            d = display.loc[i]
            role = summary.loc[i, "role"]
            note = summary.loc[i, "note"]
            tag = role_tag(role, note if isinstance(note, str) else "")
            name = esc(summary.loc[i, "label"])
            if tag:
                shown = f"reference: {tag}" if role == "reference" and tag != role else tag
                name += f'<span class="tag">{esc(shown)}</span>'
            rows.append([name, esc(d["n"]), *[esc(d[c]).replace(" [", '<br><span class="ci">[')
                                              + ("</span>" if " [" in d[c] else "")
                                              for c in display.columns[3:]]])
            row_cls.append(role if role in ("reference", "ablation") else "")
            cell_cls.append(["", "", *["best" if best.loc[i, m] else "" for m in metric_names]])
        parts.append(table(headers, rows, 1, row_cls, cell_cls))
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
    ablations: pd.DataFrame
    claimed_points: float
    claimed_gain: float
    alpha: float
    charts: list
    experiment: Optional[dict]
    experiment_note: str
    environment: pd.DataFrame
    clones: Optional[pd.DataFrame] = None
    positions: Optional[pd.DataFrame] = None


def render(c: ReportContent) -> str:
    """The whole report page as one HTML string."""
    name = (c.experiment or {}).get("name") or Path(c.root).resolve().name
    n_streams = c.runs["stream"].nunique()
    sections = [
        ("overview", "", section_overview(c.runs)),
        ("configuration", "Configuration",
         section_configuration(c.runs, c.experiment, c.experiment_note)),
        ("summary", "Summary", section_summary(c.summary, c.display, c.best,
                                               list(c.display_metrics), c.summary_note)),
        ("claim", "Claim check", section_claim(c.claims, c.claimed_points, c.claimed_gain)),
        ("ablations", "Ablations", section_ablations(c.ablations)),
        ("clones", "PNC's clones", section_clones(
            c.clones if c.clones is not None else pd.DataFrame(columns=CLONE_COLUMNS),
            c.positions if c.positions is not None else pd.DataFrame())),
        ("tests", "Tests", section_tests(c.tests, c.ranks, c.units, c.alpha, n_streams)),
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
