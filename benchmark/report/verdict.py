"""The verdict map: one row per setting (scenario x stream x backbone x source) of several
results folders, built from each folder's tables alone (``runs.csv``, ``summary.csv``,
``claim.csv``, ``ablations.csv``), so it never drifts from them.

Per row: PNC's final accuracy A_T with its interval; the best parameter-tuning method and the
best rival at no more memory than PNC, each with PNC's paired difference in points and its
interval; PNC net of its router and the routing loss (points, intervals); and the claim check
against each rival under both readings of the abstract (``points``, ``relative``:
``benchmark.report.claim``): ``holds``, ``does not hold`` or ``undefined``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

VERDICT_COLUMNS = [
    "folder", "setting", "scenario", "dataset", "backbone", "source", "n",
    "pnc_accuracy", "pnc_accuracy_low", "pnc_accuracy_high",
    "tuning_rival", "tuning_rival_accuracy", "tuning_difference", "tuning_difference_low",
    "tuning_difference_high", "memory_rival", "memory_rival_accuracy", "memory_difference",
    "memory_difference_low", "memory_difference_high", "net_of_router", "net_of_router_low",
    "net_of_router_high", "routing_loss", "routing_loss_low", "routing_loss_high",
    "claim_tuning_points", "claim_tuning_relative", "claim_memory_points",
    "claim_memory_relative"]


def _read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(Path(folder) / "tables" / name)


def claim_word(value) -> str:
    """A claim-check cell: True -> holds, False -> does not hold, else undefined."""
    if isinstance(value, str):
        value = {"true": True, "false": False}.get(value.strip().lower(), value)
    if value is True or value == 1.0:
        return "holds"
    if value is False or value == 0.0:
        return "does not hold"
    return "undefined"


def folder_rows(folder: Path, name: str) -> list[dict]:
    """The verdict rows of one results folder (``name``: how the row names it)."""
    runs, summary = _read(folder, "runs.csv"), _read(folder, "summary.csv")
    claims, ablations = _read(folder, "claim.csv"), _read(folder, "ablations.csv")
    rows = []
    for setting in sorted(runs["stream"].unique()):
        mine = runs[runs["stream"] == setting]
        pnc_runs = mine[mine["strategy"] == "pnc"]
        if pnc_runs.empty:
            continue
        first = pnc_runs.iloc[0]
        pnc = summary[(summary["stream"] == setting) & (summary["label"] == "pnc")]
        row = {"folder": name, "setting": setting, "scenario": first.get("scenario"),
               "dataset": first.get("dataset"), "backbone": first.get("backbone"),
               "source": first.get("source"), "n": int(pnc["n"].iloc[0]) if len(pnc) else 0}
        if len(pnc):
            row.update(pnc_accuracy=pnc["final_accuracy_mean"].iloc[0],
                       pnc_accuracy_low=pnc["final_accuracy_ci_low"].iloc[0],
                       pnc_accuracy_high=pnc["final_accuracy_ci_high"].iloc[0])
        for comparison, prefix in (("parameter-tuning", "tuning"), ("memory", "memory")):
            c = claims[(claims["stream"] == setting) & (claims["comparison"] == comparison)]
            if c.empty or not isinstance(c["rival"].iloc[0], str):
                continue
            c = c.iloc[0]
            row.update({f"{prefix}_rival": c["rival"],
                        f"{prefix}_rival_accuracy": c["accuracy_rival"],
                        f"{prefix}_difference": c["accuracy_difference_points"],
                        f"{prefix}_difference_low": c["accuracy_difference_low"],
                        f"{prefix}_difference_high": c["accuracy_difference_high"],
                        f"claim_{prefix}_points": claim_word(c["supports_claim_points"]),
                        f"claim_{prefix}_relative": claim_word(c["supports_claim_relative"])})
        for quantity, prefix in (("PNC net of its router", "net_of_router"),
                                 ("routing loss", "routing_loss")):
            a = ablations[(ablations["stream"] == setting) & (ablations["quantity"] == quantity)]
            if len(a) and math.isfinite(float(a["difference_points"].iloc[0])):
                row.update({prefix: a["difference_points"].iloc[0],
                            f"{prefix}_low": a["difference_low"].iloc[0],
                            f"{prefix}_high": a["difference_high"].iloc[0]})
        rows.append(row)
    return rows


def verdict_table(folders: Sequence[Path], names: Sequence[str]) -> pd.DataFrame:
    """The verdict map of ``folders`` (named ``names``), in their order."""
    rows = [row for folder, name in zip(folders, names) for row in folder_rows(folder, name)]
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def points(mean, low, high, scale: float = 1.0, signed: bool = False) -> str:
    """``mean [low, high]`` with one decimal (``scale`` 100 for fractions); a dash when
    undefined."""
    if mean is None or not math.isfinite(float(mean)):
        return "-"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    text = fmt.format(scale * float(mean))
    if low is not None and high is not None and math.isfinite(float(low)) and \
            math.isfinite(float(high)):
        text += f" [{fmt.format(scale * float(low))}, {fmt.format(scale * float(high))}]"
    return text


def scenario_cell(row) -> str:
    """The scenario, with the options that tell the folder's settings apart (the setting
    label's parenthesis)."""
    setting = str(row["setting"])
    extra = setting[setting.index(" ("):] if " (" in setting else ""
    return f"{row['scenario']}{extra}"


def rival_cell(row, prefix: str) -> str:
    """``rival (its A_T): PNC - rival [interval]``, or a dash."""
    name = row[f"{prefix}_rival"]
    if not isinstance(name, str):
        return "-"
    return (f"`{name}` ({100 * row[f'{prefix}_rival_accuracy']:.1f}): "
            + points(row[f"{prefix}_difference"], row[f"{prefix}_difference_low"],
                     row[f"{prefix}_difference_high"], signed=True))


def claim_cell(row, prefix: str) -> str:
    """Both readings' claim verdicts, or a dash."""
    first, second = row[f"claim_{prefix}_points"], row[f"claim_{prefix}_relative"]
    return "-" if not isinstance(first, str) else f"{first} / {second}"


def verdict_markdown(table: pd.DataFrame) -> str:
    """The verdict map as a Markdown table (accuracies in %, differences in points)."""
    heads = ["results", "scenario", "stream", "backbone", "source", "n", "PNC A_T (%)",
             "best parameter tuning: PNC - it", "best rival at <= PNC's memory: PNC - it",
             "PNC net of its router", "routing loss", "claim vs tuning (points / relative)",
             "claim vs memory rival (points / relative)"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join([
            f"`{r['folder']}`", scenario_cell(r), str(r["dataset"]), f"`{r['backbone']}`",
            str(r["source"]) if isinstance(r["source"], str) else "-", str(r["n"]),
            points(r["pnc_accuracy"], r["pnc_accuracy_low"], r["pnc_accuracy_high"], 100),
            rival_cell(r, "tuning"), rival_cell(r, "memory"),
            points(r["net_of_router"], r["net_of_router_low"], r["net_of_router_high"],
                   signed=True),
            points(r["routing_loss"], r["routing_loss_low"], r["routing_loss_high"],
                   signed=True),
            claim_cell(r, "tuning"), claim_cell(r, "memory")]) + " |")
    return "\n".join(lines) + "\n"
