"""What ``clonebench run`` prints about its results: a compact table of the experiment's runs
and the line naming the runs that failed.

The table covers the runs of the command's own experiment (every planned run, those finished
earlier included), not other experiments sharing the folder (the report covers the whole
folder). Per stream and strategy: ``n`` successful runs, and the mean (± standard deviation over
seeds when n > 1) of A_T (final average accuracy), forgetting and L (mean step locality), and
``memory``: the bytes kept after the last step (the predicting model plus the state kept for
later steps), mean over seeds.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from benchmark.report.formats import format_bytes

COLUMNS = ("strategy", "n", "A_T", "forgetting", "L", "memory")
LISTED_FAILURES = 10


def readable_bytes(count: Optional[float]) -> str:
    """``count`` bytes in the report's units (``format_bytes``: B, kB, MB, GB); "-" for None."""
    return "-" if count is None else format_bytes(count)


def mean_sd(values: Sequence[Optional[float]]) -> str:
    """Mean of the values that are not None (3 decimals), ``± sd`` when there are several."""
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    text = f"{statistics.fmean(present):.3f}"
    if len(present) > 1:
        text += f" ± {statistics.stdev(present):.3f}"
    return text


def final_bytes(record: dict) -> Optional[int]:
    """Bytes kept after the last step: the model's plus the state's."""
    costs = record.get("costs") or {}
    model, state = costs.get("model_bytes") or [], costs.get("state_bytes") or []
    if not model:
        return None
    return model[-1] + (state[-1] if state and state[-1] is not None else 0)


def summary_rows(records: Sequence[dict]) -> list[dict[str, str]]:
    """One row per (stream, strategy configuration), in the records' order: the table's cells
    as text. Several configurations of a strategy are labelled as in the report."""
    from benchmark.report.tables import setting_labels, variant_labels

    labels, settings = variant_labels(records), setting_labels(records)
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((settings[r["key"]], labels[r["key"]]), []).append(r)
    streams = {stream for stream, _ in groups}
    rows = []
    for (stream, strategy), group in groups.items():
        ok = [r for r in group if r["status"] == "ok"]
        memory = [final_bytes(r) for r in ok]
        known = [m for m in memory if m is not None]
        rows.append({
            "strategy": strategy if len(streams) == 1 else f"{stream}: {strategy}",
            "n": str(len(ok)) + (f" ({len(group) - len(ok)} failed)" if len(ok) < len(group)
                                 else ""),
            "A_T": mean_sd([r["metrics"].get("final_accuracy") for r in ok]),
            "forgetting": mean_sd([r["metrics"].get("forgetting") for r in ok]),
            "L": mean_sd([r["metrics"].get("locality") for r in ok]),
            "memory": readable_bytes(statistics.fmean(known) if known else None),
        })
    return rows


def format_table(rows: Sequence[dict[str, str]], columns: Sequence[str] = COLUMNS) -> str:
    """A plain-text table: a header, a rule and the rows; text left-aligned, the rest right."""
    widths = [max([len(c)] + [len(r[c]) for r in rows]) for c in columns]

    def line(cells):
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(columns), line("-" * w for w in widths)]
                     + [line([r[c] for c in columns]) for r in rows])


def failure_line(failures: Sequence[tuple[dict, Path]]) -> str:
    """``2 runs failed: pnc seed 3 (results/x/runs/ab12....json), ...; see their "error"``."""
    shown = [f"{cfg['strategy']} seed {cfg['seed']} ({path})"
             for cfg, path in failures[:LISTED_FAILURES]]
    more = len(failures) - len(shown)
    listed = ", ".join(shown) + (f", and {more} more" if more else "")
    runs = "run" if len(failures) == 1 else "runs"
    return f'{len(failures)} {runs} failed: {listed}; see their "error"'
