"""``build_report(DIR)``: the tables, figures and HTML report of a results folder, from its
records alone.

Every record under ``DIR/runs/`` is read first (a corrupt one stops it with an error naming the
file, before anything is written); then, each file atomically:

- ``tables/runs.csv``: one row per run (failed ones included): identity, every metric, costs;
- ``tables/steps.csv``: one row per successful run and step: A_k, L_k, old and new accuracy;
- ``tables/summary.csv|md|tex``: per stream x strategy: n, and per metric mean, std, interval;
- ``tables/tests.csv``: every rival and ablation against ``pnc``, paired by seed, and the
  Friedman / Iman-Davenport tests across streams; ``tables/ranks.csv``: average ranks and the
  Nemenyi critical difference;
- ``tables/claim.csv``: the paper-claim check, twice per stream;
- ``tables/ablations.csv``: PNC net of its router, and the routing loss;
- ``tables/pnc_clones.csv`` and ``tables/pnc_positions.csv``: what PNC cloned, per step and
  per candidate position (``benchmark.report.pnc_clones``);
- ``figures/*.png`` and the self-contained ``report.html``.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from benchmark.core.metrics import as_matrix
from benchmark.report import figures, page
from benchmark.report.ablations import ablation_table
from benchmark.report.claim import CLAIMED_GAIN, CLAIMED_POINTS, claim_table
from benchmark.report.comparisons import ALPHA, combine_tests, friedman_tests, paired_tests
from benchmark.report.formats import (
    DISPLAY_METRICS,
    SUMMARY_NOTE,
    best_mask,
    display_summary,
    role_tag,
    summary_latex,
    summary_markdown,
)
from benchmark.report.pnc_clones import clone_table, position_table, positions_chart
from benchmark.report.tables import (
    BASELINE,
    SUMMARY_METRICS,
    label_roles,
    loss_table,
    runs_table,
    setting_labels,
    steps_table,
    strategy_order,
    summary_table,
    variant_labels,
)
from benchmark.report.tuning import choices_table, trials_table
from benchmark.run.folder import ReportWriter
from benchmark.run.store import ResultsStore, atomic_write


def mean_accuracy_matrices(records: Sequence[dict], labels: Optional[dict[str, str]] = None,
                           settings: Optional[dict[str, str]] = None
                           ) -> dict[str, dict[str, np.ndarray]]:
    """Setting -> label -> mean over successful seeds of the accuracy matrix (NaN above the
    diagonal); runs whose matrix shape differs from the label's most common one are left out."""
    labels = labels if labels is not None else variant_labels(records)
    settings = settings if settings is not None else setting_labels(records)
    groups: dict[tuple[str, str], list[np.ndarray]] = {}
    for r in records:
        if r["status"] == "ok" and r["accuracy_matrix"]:
            groups.setdefault((settings[r["key"]], labels[r["key"]]), []).append(
                as_matrix(r["accuracy_matrix"]))
    out: dict[str, dict[str, np.ndarray]] = {}
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


def read_experiment(root: Path) -> tuple[Optional[dict], str]:
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
    root = Path(root)
    store = ResultsStore(root).check()
    records = list(store.records())
    labels = variant_labels(records)  # once: each table below labels the same runs
    settings = setting_labels(records)
    runs = runs_table(records, labels, settings)
    steps = steps_table(records, labels, settings)
    summary = summary_table(runs)
    paired = paired_tests(runs)
    friedman_rows, ranks = friedman_tests(runs)
    tests = combine_tests(paired, friedman_rows)
    claims = claim_table(runs)
    ablations = ablation_table(runs)
    roles = label_roles(runs)
    order = strategy_order(runs["label"], roles)
    tags = {label: role_tag(role, note) for label, role, note in
            zip(runs["label"], runs["role"], runs["note"].fillna(""))}
    charts = figures.all_charts(summary, steps, loss_table(records, labels, settings),
                                mean_accuracy_matrices(records, labels, settings), ranks, order,
                                tags, roles)
    clones = clone_table(records, labels, settings)
    positions = position_table(records, labels, settings)
    measured = positions[np.isfinite(positions["module_bytes_mean"].astype(float))]
    charts += [positions_chart(stream, measured)
               for stream in sorted(measured["stream"].unique())]
    experiment, experiment_note = read_experiment(root)
    content = page.render(page.ReportContent(
        root=root, runs=runs, summary=summary, display=display_summary(summary),
        best=best_mask(summary), display_metrics=[m.name for m in DISPLAY_METRICS],
        summary_note=SUMMARY_NOTE, units={m.name: m.unit for m in SUMMARY_METRICS},
        tests=tests, ranks=ranks, claims=claims, ablations=ablations,
        claimed_points=CLAIMED_POINTS, claimed_gain=CLAIMED_GAIN, alpha=ALPHA, charts=charts,
        experiment=experiment, experiment_note=experiment_note,
        environment=environment_table(records), clones=clones, positions=positions))

    # Every file under tables/ and figures/ goes through the writer, which refuses a folder
    # holding files the suite did not write and removes only its own stale ones.
    out = ReportWriter(root)
    out.write("tables/runs.csv", _csv(runs))
    out.write("tables/steps.csv", _csv(steps))
    out.write("tables/summary.csv", _csv(summary))
    out.write("tables/summary.md", summary_markdown(summary))
    out.write("tables/summary.tex", summary_latex(summary))
    out.write("tables/tests.csv", _csv(tests))
    out.write("tables/ranks.csv", _csv(ranks))
    out.write("tables/claim.csv", _csv(claims))
    out.write("tables/ablations.csv", _csv(ablations))
    out.write("tables/pnc_clones.csv", _csv(clones))
    out.write("tables/pnc_positions.csv", _csv(positions))
    tuning = [r for r in records if r["config"].get("split") == "validation"]
    if tuning:  # a tuning folder (clonebench tune): its trials and the choices made
        trials = trials_table(tuning)
        out.write("tables/trials.csv", _csv(trials))
        out.write("tables/choices.csv", _csv(choices_table(trials)))
    for chart in charts:
        out.write(f"figures/{chart.name}", chart.png)
    out.finish()
    report = root / "report.html"
    atomic_write(report, content)
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
