"""What PNC cloned, from its records' step reports: per step the position chosen and why, the
cloned blocks, the kept-channel fraction of every source block and the module's bytes
(``pnc_clones.csv``); per position over all steps and seeds, how often it was a candidate and
chosen, its held-out accuracy and its module's bytes (``pnc_positions.csv``); and the figure
of module bytes against position (``pnc_positions__<setting>.png``).

Only ``pnc`` runs are read (``pnc-oracle`` shares their modules); steps without a clone (the
first) are left out.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.report.chart import Chart, png, slug
from benchmark.report.formats import format_bytes
from benchmark.report.htmlkit import esc, table

CLONE_COLUMNS = ["stream", "label", "seed", "step", "position", "position_reason",
                 "cloned_blocks", "kept_fraction", "kept_fraction_per_block", "module_bytes",
                 "router_bytes", "parameters_added"]
POSITION_COLUMNS = ["stream", "label", "position", "candidates", "chosen",
                    "heldout_accuracy_mean", "module_bytes_mean"]


def clone_table(records: Sequence[dict], labels: dict, settings: dict) -> pd.DataFrame:
    """One row per successful ``pnc`` run and cloning step (see the module docstring)."""
    rows = []
    for r in records:
        if r["status"] != "ok" or r["config"]["strategy"] != "pnc":
            continue
        for step in r.get("steps") or []:
            if not step or step.get("position") is None:
                continue
            per_block = step.get("kept_fraction_per_block")
            rows.append({"stream": settings[r["key"]], "label": labels[r["key"]],
                         "seed": r["config"]["seed"], "step": step.get("step"),
                         "position": step["position"],
                         "position_reason": step.get("position_reason"),
                         "cloned_blocks": step.get("cloned_blocks"),
                         "kept_fraction": step.get("kept_fraction"),
                         "kept_fraction_per_block": json.dumps(
                             [round(v, 4) for v in per_block]) if per_block else None,
                         "module_bytes": step.get("module_bytes"),
                         "router_bytes": step.get("router_bytes"),
                         "parameters_added": step.get("parameters_added")})
    return pd.DataFrame(rows, columns=CLONE_COLUMNS)


def position_table(records: Sequence[dict], labels: dict, settings: dict) -> pd.DataFrame:
    """Per setting, pnc label and candidate position: candidate and chosen counts over steps
    and seeds, mean held-out accuracy and mean module bytes (steps whose records carry
    them)."""
    found: dict[tuple, dict] = {}
    for r in records:
        if r["status"] != "ok" or r["config"]["strategy"] != "pnc":
            continue
        for step in r.get("steps") or []:
            scores, sizes = (step or {}).get("position_scores"), (step or {}).get(
                "position_bytes") or {}
            if not scores:
                continue
            for position, score in scores.items():
                entry = found.setdefault((settings[r["key"]], labels[r["key"]], int(position)),
                                         {"candidates": 0, "chosen": 0, "accuracy": [],
                                          "bytes": []})
                entry["candidates"] += 1
                entry["chosen"] += int(step.get("position") == int(position))
                entry["accuracy"].append(score["accuracy"])
                if position in sizes:
                    entry["bytes"].append(sizes[position])
    rows = [{"stream": s, "label": label, "position": p, "candidates": e["candidates"],
             "chosen": e["chosen"], "heldout_accuracy_mean": float(np.mean(e["accuracy"])),
             "module_bytes_mean": float(np.mean(e["bytes"])) if e["bytes"] else np.nan}
            for (s, label, p), e in sorted(found.items())]
    return pd.DataFrame(rows, columns=POSITION_COLUMNS)


def positions_chart(stream: str, positions: pd.DataFrame) -> Chart:
    """Module bytes (log scale) and held-out accuracy against the insertion position, with how
    often each position was chosen."""
    rows = positions[positions["stream"] == stream].sort_values("position")
    fig = Figure(figsize=(7.6, 4.2))
    ax = fig.subplots()
    ax.plot(rows["position"], rows["module_bytes_mean"], marker="o", color="tab:blue")
    for _, row in rows.iterrows():
        ax.annotate(f"chosen {row['chosen']}/{row['candidates']}",
                    (row["position"], row["module_bytes_mean"]), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("insertion position p (0 = the input; block boundary of the target)")
    ax.set_ylabel("module bytes (mean over steps and seeds)", color="tab:blue")
    ax.set_xticks(sorted(rows["position"].unique()))
    twin = ax.twinx()
    twin.plot(rows["position"], 100 * rows["heldout_accuracy_mean"], marker="s",
              linestyle="--", color="tab:orange")
    twin.set_ylabel("held-out accuracy of the candidate (%)", color="tab:orange")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{stream}: PNC's module bytes against position")
    return Chart(f"pnc_positions__{slug(stream)}.png",
                 f"PNC's module bytes against insertion position ({stream})",
                 "For every candidate position of every cloning step: the mean bytes of the "
                 "candidate module (adapter, pruned source blocks, head; solid, left axis, log "
                 "scale) and its held-out accuracy on the step's classes (dashed, right axis); "
                 "annotations count how often each position was chosen.", png(fig))


def section_clones(clones: pd.DataFrame, positions: pd.DataFrame) -> str:
    """The report's section on PNC's clones."""
    parts = ["<h2>PNC's clones</h2>"]
    if clones.empty:
        parts.append("<p>No PNC cloning steps in this folder.</p>")
        return "\n".join(parts)
    parts.append('<p class="note">Per candidate insertion position (over every cloning step '
                 "and seed): how often it was chosen, the mean held-out accuracy of its "
                 "module and the mean module bytes; then, per setting, the kept-channel "
                 "fraction per source block and the bytes of the modules kept "
                 "(tables/pnc_positions.csv, tables/pnc_clones.csv).</p>")
    rows = [[esc(r["stream"]), esc(r["label"]), esc(r["position"]),
             f"{r['chosen']} / {r['candidates']}",
             f"{100 * r['heldout_accuracy_mean']:.1f}", format_bytes(r["module_bytes_mean"])]
            for _, r in positions.iterrows()]
    parts.append(table(["stream", "strategy", "position", "chosen / candidates",
                        "held-out accuracy (%)", "module bytes"], rows, text_columns={0, 1}))
    summary = []
    for (stream, label), group in clones.groupby(["stream", "label"], sort=True):
        blocks = [json.loads(v) for v in group["kept_fraction_per_block"].dropna()]
        per_block = np.mean(np.array(blocks), axis=0) if blocks else []
        reasons = group["position_reason"].value_counts()
        summary.append([esc(stream), esc(label), esc(len(group)),
                        esc(", ".join(f"{100 * v:.0f}%" for v in per_block)),
                        format_bytes(float(group["module_bytes"].mean())),
                        esc("; ".join(f"{k} ({v})" for k, v in reasons.items()))])
    parts.append(table(["stream", "strategy", "cloning steps", "kept channels per block",
                        "module bytes (mean)", "why the position"], summary,
                       text_columns={0, 1, 3, 5}))
    return "\n".join(parts)
