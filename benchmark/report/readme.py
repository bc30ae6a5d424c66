"""``clonebench readme``: the README's result sections, rewritten from the committed tables.

The README marks each generated section with ``<!-- generated: NAME -->`` ... ``<!-- end
generated -->``; everything between is replaced by what ``render_section(NAME)`` builds from
the tables under ``results/`` (never typed). Names:

- ``verdict``: the verdict map over the committed folders (``benchmark.report.verdict``);
- ``evidence``: the paragraphs of "What the evidence says", scenario by scenario, every figure
  read from the verdict map and the folders' tables;
- ``summary FOLDER``: the folder's per-strategy table (A_T, forgetting or base/cloned accuracy,
  locality, memory, training seconds) followed by its claim check under both readings (where
  PNC ran);
- ``positions FOLDER`` (docs/design.md): PNC's candidate insertion positions in the folder,
  how often each was chosen, its mean held-out accuracy and module bytes
  (``tables/pnc_positions.csv``);
- ``trials FOLDER`` and ``settings GLOB`` (docs/tuning.md): a tuning folder's trials, and the
  training settings compared in the folders matching GLOB (``benchmark.report.tuning_text``).

The same marks work in any Markdown file: ``clonebench readme`` rewrites README.md,
docs/tuning.md and docs/design.md.

``clonebench readme --check`` exits 1 (printing the first differing section) when the README
is not what the tables give; a test runs it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import pandas as pd

from benchmark.report.claim import COMPARISONS
from benchmark.report.formats import role_tag
from benchmark.report.tuning_text import settings_markdown, trials_markdown
from benchmark.report.verdict import points, verdict_markdown, verdict_table
from benchmark.report.verdict_text import evidence_text

SECTION = re.compile(r"(<!-- generated: (?P<name>[^>]+?) -->\n)(?P<body>.*?)(<!-- end generated "
                     r"-->)", re.S)
# The committed folders of the verdict map, in the README's order.
VERDICT_FOLDERS = ("default", "memory-matched", "pretrained-source", "fashion-mnist",
                   "fashion-mnist-cnn", "cloning", "cloning-cnn", "domain", "mixed")


def _table(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / "tables" / name)


def committed_folders(results: Path) -> list[Path]:
    """The verdict map's folders that exist under ``results``, in order."""
    return [results / name for name in VERDICT_FOLDERS if (results / name / "tables").is_dir()]


def _cell(row, metric: str, scale: float = 100.0) -> str:
    return points(row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"],
                  scale)


def _kb(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value / 1000:,.1f}"


def summary_section(folder: Path) -> str:
    """A folder's per-strategy table and claim lines (module docstring)."""
    summary, claims = _table(folder, "summary.csv"), _table(folder, "claim.csv")
    parts = []
    settings = list(dict.fromkeys(summary["stream"]))
    for setting in settings:
        rows = summary[(summary["stream"] == setting) & (summary["n"] > 0)].copy()
        cloning = bool((rows["scenario"] == "cloning").any()) if "scenario" in rows else False
        middle = (["base acc. (%)", "cloned acc. (%)"] if cloning else ["forgetting (%)"])
        heads = ["strategy", "role", "n", "A_T (%)", *middle, "L (%)", "memory (KB)",
                 "train s"]
        rank = {"reference": 0, "ablation": 1}
        rows["order"] = [rank.get(r, 3 if label != "pnc" else 2)
                         for r, label in zip(rows["role"], rows["label"])]
        rows = rows.sort_values(["order", "final_accuracy_mean"], ascending=[True, False])
        if len(settings) > 1:
            parts.append(f"*{setting}*\n")
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for _, r in rows.iterrows():
            tag = role_tag(r["role"], r["note"] if isinstance(r["note"], str) else "")
            name = f"**`{r['label']}`**" if r["label"] == "pnc" else f"`{r['label']}`"
            if tag and r["role"] == "reference":
                name += f" ({tag})"
            values = ([_cell(r, "base_accuracy"), _cell(r, "cloned_accuracy")] if cloning
                      else [_cell(r, "forgetting")])
            lines.append("| " + " | ".join([
                name, "method" if r["strategy"] == "pnc" else r["role"], str(int(r["n"])),
                _cell(r, "final_accuracy"), *values, _cell(r, "locality"),
                _kb(float(r["total_bytes_mean"])), f"{float(r['seconds_mean']):.1f}"]) + " |")
        parts.append("\n".join(lines) + "\n")
        if (rows["label"] == "pnc").any():  # a folder without PNC has no claim to check
            parts.append(claim_lines(claims[claims["stream"] == setting]))
    return "\n".join(parts)


def positions_section(folder: Path) -> str:
    """PNC's candidate positions per setting and PNC configuration of a folder (module
    docstring)."""
    table = _table(folder, "pnc_positions.csv")  # PNC's runs only, one label per config
    lines = ["| setting | configuration | position | candidate steps | chosen | held-out "
             "accuracy (%) | module (KB) |", "|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['stream']} | `{r['label']}` | {int(r['position'])} | "
                     f"{int(r['candidates'])} | {int(r['chosen'])} | "
                     f"{100 * r['heldout_accuracy_mean']:.1f} | "
                     f"{_kb(float(r['module_bytes_mean']))} |")
    return "\n".join(lines) + "\n"


def claim_lines(claims: pd.DataFrame) -> str:
    """One bullet per comparison of a setting's claim check, both readings."""
    lines = []
    for _, c in claims.iterrows():
        if not isinstance(c["rival"], str):
            lines.append(f"- Against {COMPARISONS[c['comparison']]}: none ({c['reason']}).")
            continue
        acc = points(c["accuracy_difference_points"], c["accuracy_difference_low"],
                     c["accuracy_difference_high"], signed=True)
        loc = points(c["locality_difference_points"], c["locality_difference_low"],
                     c["locality_difference_high"], signed=True)
        gain = points(c["accuracy_gain"], c["accuracy_gain_low"], c["accuracy_gain_high"], 100,
                      signed=True)
        lgain = points(c["locality_gain"], c["locality_gain_low"], c["locality_gain_high"],
                       100, signed=True)
        word = {True: "holds", False: "does not hold"}
        lines.append(
            f"- Against {COMPARISONS[c['comparison']]}, `{c['rival']}` "
            f"({c['rival_total_bytes'] / 1000:,.1f} KB against PNC's "
            f"{c['pnc_total_bytes'] / 1000:,.1f} KB; {int(c['n_pairs'])} pairs): A_T "
            f"{100 * c['accuracy_pnc']:.1f}% against {100 * c['accuracy_rival']:.1f}%, "
            f"{acc} points (relative {gain}%); locality {loc} points (relative {lgain}%). "
            f"Read in points: {c['accuracy_verdict_points']} / {c['locality_verdict_points']}"
            f": the claim **{word.get(_bool(c['supports_claim_points']), 'is undefined')}**. "
            f"Read relative: {c['accuracy_verdict_relative']} / "
            f"{c['locality_verdict_relative']}: the claim "
            f"**{word.get(_bool(c['supports_claim_relative']), 'is undefined')}**.")
    return "\n".join(lines) + "\n"


def _bool(value):
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def render_section(name: str, results: Path,
                   verdict: Optional[pd.DataFrame] = None) -> str:
    """The body of the README section ``name`` (module docstring); ``verdict``, the verdict
    map of ``results`` when the caller has built it already."""
    if name in ("verdict", "evidence") and verdict is None:
        folders = committed_folders(results)
        verdict = verdict_table(folders, [f.name for f in folders])
    if name == "verdict":
        return verdict_markdown(verdict)
    if name == "evidence":
        return evidence_text(verdict, results)
    kind, _, argument = name.partition(" ")
    if kind == "summary":
        return summary_section(results / argument)
    if kind == "positions":
        return positions_section(results / argument)
    if kind == "trials":
        return trials_markdown(results / argument)
    if kind == "settings":
        folders = sorted(results.glob(argument))
        return settings_markdown(folders, [f.name for f in folders])
    raise ValueError(f"unknown generated section {name!r}")


def rewrite(text: str, results: Path) -> str:
    """``text`` (a README) with every generated section rebuilt (the verdict map read once)."""
    names = {m.group("name").strip() for m in SECTION.finditer(text)}
    verdict = None
    if names & {"verdict", "evidence"}:
        folders = committed_folders(results)
        verdict = verdict_table(folders, [f.name for f in folders])

    def body(match: re.Match) -> str:
        return match.group(1) + render_section(match.group("name").strip(), results,
                                                verdict) + match.group(4)
    return SECTION.sub(body, text)


def first_difference(old: str, new: str) -> str:
    """The name of the first generated section that differs (or "text")."""
    olds = {m.group("name"): m.group("body") for m in SECTION.finditer(old)}
    for m in SECTION.finditer(new):
        if olds.get(m.group("name")) != m.group("body"):
            return m.group("name")
    return "text"


def run(readme: Path, results: Path, check: bool) -> int:
    """Rewrites ``readme`` (or, with ``check``, says whether it is up to date: 0, else 1)."""
    text = readme.read_text()
    if not SECTION.search(text):
        print(f"{readme}: no generated section")
        return 0
    new = rewrite(text, results)
    if check:
        if new != text:
            print(f"{readme}: generated section {first_difference(text, new)!r} differs from "
                  "the committed tables; run `make readme`")
            return 1
        print(f"{readme}: generated sections match the committed tables")
        return 0
    if new != text:
        readme.write_text(new)
    print(f"{readme}: {len(SECTION.findall(new))} generated sections written")
    return 0


def sections(text: str) -> Sequence[str]:
    return [m.group("name") for m in SECTION.finditer(text)]
