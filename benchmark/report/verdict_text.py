"""The README's "What the evidence says", written from the verdict map: one paragraph per
scenario, one sentence per row, every number and every comparative word (above, below, not
apart) read from the rows' intervals, so the text cannot drift from the tables."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmark.report.verdict import points

SCENARIO_ORDER = ("class-incremental", "cloning", "domain-incremental", "mixed")
SCENARIO_TITLES = {
    "class-incremental": "Class-incremental (disjoint classes per step, no task label)",
    "cloning": "Cloning (the paper's setting: a pre-trained target, a model zoo, few samples)",
    "domain-incremental": "Domain-incremental (the same classes under a new domain per step)",
    "mixed": "Mixed (new classes and new instances of known ones at every step)",
}


def compared(mean, low, high) -> str:
    """How an interval of a difference reads: significantly above or below 0, or not apart."""
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (mean, low, high)):
        return "not measured"
    if low > 0:
        return "above"
    if high < 0:
        return "below"
    return "not apart from"


def row_sentence(r: pd.Series) -> str:
    where = f"`results/{r['folder']}` ({r['dataset']}, `{r['backbone']}`"
    if " (" in str(r["setting"]):
        where += ", " + str(r["setting"]).split(" (", 1)[1].rstrip(")")
    where += f"; {r['n']} seeds)"
    text = (f"{where}: PNC reaches A_T "
            f"{points(r['pnc_accuracy'], r['pnc_accuracy_low'], r['pnc_accuracy_high'], 100)}%")
    if isinstance(r["memory_rival"], str):
        side = compared(r["memory_difference"], r["memory_difference_low"],
                        r["memory_difference_high"])
        text += (f", {side} the best rival at no more memory, `{r['memory_rival']}` "
                 f"({100 * r['memory_rival_accuracy']:.1f}%; PNC - it = "
                 f"{points(r['memory_difference'], r['memory_difference_low'], r['memory_difference_high'], signed=True)}"  # noqa: E501
                 " points)")
    if isinstance(r["tuning_rival"], str):
        side = compared(r["tuning_difference"], r["tuning_difference_low"],
                        r["tuning_difference_high"])
        text += (f"; {side} the best parameter-tuning method, `{r['tuning_rival']}` "
                 f"({100 * r['tuning_rival_accuracy']:.1f}%)")
    if math.isfinite(float(r["net_of_router"])):
        side = compared(r["net_of_router"], r["net_of_router_low"], r["net_of_router_high"])
        text += (f"; {side} its own router used alone (PNC net of its router "
                 f"{points(r['net_of_router'], r['net_of_router_low'], r['net_of_router_high'], signed=True)}"  # noqa: E501
                 " points)")
    if math.isfinite(float(r["routing_loss"])):
        text += (f"; routing costs it "
                 f"{points(r['routing_loss'], r['routing_loss_low'], r['routing_loss_high'], signed=True)}"  # noqa: E501
                 " points against the oracle")
    claims = []
    for prefix, against in (("tuning", "parameter tuning"), ("memory", "the memory rival")):
        if isinstance(r[f"claim_{prefix}_points"], str):
            claims.append(f"against {against} it {r[f'claim_{prefix}_points']} read in points "
                          f"and {r[f'claim_{prefix}_relative']} read relative")
    if claims:
        text += ". The claim: " + "; ".join(claims)
    return text + "."


def scenario_summary(rows: pd.DataFrame) -> str:
    """A count of where PNC stands against its memory rival and its router in a scenario."""
    sides = [compared(r["memory_difference"], r["memory_difference_low"],
                      r["memory_difference_high"]) for _, r in rows.iterrows()]
    routers = [compared(r["net_of_router"], r["net_of_router_low"], r["net_of_router_high"])
               for _, r in rows.iterrows()]
    n = len(rows)
    return (f"In {n} setting{'s' if n != 1 else ''}, PNC is above the best rival at no more "
            f"memory in {sides.count('above')}, below it in {sides.count('below')} and not "
            f"apart in {sides.count('not apart from')}; above its router alone in "
            f"{routers.count('above')}, below in {routers.count('below')}.")


def evidence_text(verdict: pd.DataFrame, results: Path) -> str:
    """The evidence paragraphs (module docstring)."""
    parts = []
    for scenario in SCENARIO_ORDER:
        rows = verdict[verdict["scenario"] == scenario]
        if rows.empty:
            continue
        parts.append(f"**{SCENARIO_TITLES[scenario]}.** {scenario_summary(rows)}\n")
        parts += [f"- {row_sentence(r)}" for _, r in rows.iterrows()]
        parts.append("")
    return "\n".join(parts)
