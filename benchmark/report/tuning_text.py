"""The tuning tables of the documentation (docs/tuning.md), written from a tuning folder's
``trials.csv`` and ``choices.csv`` so that they cannot drift from the committed sweep.

``trials_markdown(folder)``: per strategy, every trial's values of the options its grid varies,
with the mean validation A_T (and locality) over the tuning seeds, best first, the chosen
configuration in bold, and whether it is the strategy's default. ``settings_markdown(folders)``:
the training settings compared by joint and finetune (one folder per setting), with what a run
of each costs.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def _varying(options: Sequence[dict]) -> list[str]:
    names = sorted({k for o in options for k in o})
    return [n for n in names if len({json.dumps(o.get(n)) for o in options}) > 1]


def _shown(options: dict, keys: Sequence[str]) -> str:
    if not keys:
        return "defaults"
    return ", ".join(f"{k}={options.get(k)}" for k in keys)


def trials_markdown(folder: Path) -> str:
    """The trials table of a tuning folder (module docstring)."""
    trials = pd.read_csv(folder / "tables" / "trials.csv")
    choices = pd.read_csv(folder / "tables" / "choices.csv").set_index("strategy")
    trials = trials[trials["status"] == "ok"]
    lines = ["| strategy | trials (validation A_T, L; best first) | chosen |", "|---|---|---|"]
    for strategy, group in trials.groupby("strategy", sort=True):
        means = group.groupby("options")[["final_accuracy", "locality"]].mean()
        means = means.sort_values("final_accuracy", ascending=False)
        parsed = {o: json.loads(o) for o in means.index}
        keys = _varying(list(parsed.values()))
        chosen = choices.loc[strategy, "chosen"] if strategy in choices.index else None
        cells = []
        for option, row in means.iterrows():
            locality = "" if pd.isna(row["locality"]) else f", L {row['locality']:.3f}"
            cell = f"{_shown(parsed[option], keys)}: {row['final_accuracy']:.3f}{locality}"
            cells.append(f"**{cell}**" if chosen is not None and json.loads(option) == json.loads(
                chosen) else cell)
        same = chosen is not None and json.loads(chosen) == json.loads(
            choices.loc[strategy, "defaults"])
        lines.append(f"| `{strategy}` | {'; '.join(cells)} | "
                     f"{'the default' if same else 'differs from the default'} |")
    return "\n".join(lines) + "\n"


def settings_markdown(folders: Sequence[Path], labels: Sequence[str]) -> str:
    """One row per training setting (a tuning folder each): the validation A_T of joint's and
    finetune's chosen configurations (``choices.csv``), and finetune's training seconds per
    run (``runs.csv``, the mean over its runs: what one run of the setting costs)."""
    lines = ["| setting | joint validation A_T | finetune validation A_T | finetune train s |",
             "|---|---|---|---|"]
    for folder, label in zip(folders, labels):
        choices = pd.read_csv(folder / "tables" / "choices.csv").set_index("strategy")
        runs = pd.read_csv(folder / "tables" / "runs.csv")
        cells = [f"{choices.loc[s, 'final_accuracy_mean']:.3f}" if s in choices.index else "-"
                 for s in ("joint", "finetune")]
        seconds = runs.loc[runs["strategy"] == "finetune", "seconds"]
        cells.append(f"{seconds.mean():.1f}" if len(seconds) else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
