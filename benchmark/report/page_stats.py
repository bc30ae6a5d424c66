"""The report's statistical sections: the claim check (twice per stream), PNC's ablations and
the tests (one row per compared strategy, the test that applies, the Friedman / Iman-Davenport
tests across streams, or why they are absent)."""
from __future__ import annotations

import pandas as pd

from benchmark.core.metrics import METRICS_BY_NAME
from benchmark.report.claim import COMPARISONS, READINGS
from benchmark.report.comparisons import WILCOXON_ABSENT
from benchmark.report.formats import format_bytes
from benchmark.report.htmlkit import esc, finite, interval, num, pval, table, text
from benchmark.report.stats import INTERVAL_METHOD

HTML_TEST_METRICS = ("final_accuracy", "average_incremental_accuracy", "forgetting",
                     "locality", "original_locality")


def _verdict_class(supports) -> str:
    if supports is True or supports == 1.0:
        return "yes"
    if supports is False or supports == 0.0:
        return "no"
    return "undefined"


def _gain(c, metric: str) -> str:
    """A relative gain cell, or why it is absent."""
    if finite(c[f"{metric}_gain"]):
        return interval(c[f"{metric}_gain"], c[f"{metric}_gain_low"], c[f"{metric}_gain_high"],
                        1, 100)
    return "— (no bounded interval)"


def _claim_rows(group: pd.DataFrame) -> list:
    rows = []
    for _, c in group.iterrows():
        if not isinstance(c.get("rival"), str):
            rows.append([esc(COMPARISONS[c["comparison"]]), f"— ({text(c['reason'])})",
                         "", "", "", "", "", "", "", "", "", ""])
            continue
        memory = (f"{format_bytes(c['pnc_total_bytes'])} / "
                  f"{format_bytes(c['rival_total_bytes'])}")
        rows.append([esc(COMPARISONS[c["comparison"]]),
                     f"<b>{esc(c['rival'])}</b> <span class=\"note\">(best of: "
                     f"{esc(c['candidates'])})</span>", esc(memory), num(c["n_pairs"], 0),
                     interval(c["accuracy_difference_points"], c["accuracy_difference_low"],
                              c["accuracy_difference_high"]),
                     esc(c["accuracy_verdict_points"]), _gain(c, "accuracy"),
                     esc(c["accuracy_verdict_relative"]),
                     interval(c["locality_difference_points"], c["locality_difference_low"],
                              c["locality_difference_high"]),
                     esc(c["locality_verdict_points"]), _gain(c, "locality"),
                     esc(c["locality_verdict_relative"])])
    return rows


def section_claim(claims: pd.DataFrame, claimed_points: float, claimed_gain: float) -> str:
    parts = ['<h2>Paper-claim check</h2>',
             f"<p>The paper's abstract reports that PNC beats parameter-tuning methods by about "
             f"{claimed_points:g}% in accuracy and {100 * claimed_gain:g}% in locality. Its "
             "tables are not available to us, so both readings are checked: <b>points</b> ("
             f"{esc(READINGS['points'])}) and <b>relative</b> ({esc(READINGS['relative'])}). "
             "PNC is checked twice per setting, paired by seed: against "
             f"{esc(COMPARISONS['parameter-tuning'])} (the highest mean A_T among finetune, "
             f"EWC and LwF) and against {esc(COMPARISONS['memory'])} (model + state bytes "
             "after the last step, mean over seeds). Differences are pnc − rival in points "
             f"with 95% intervals ({INTERVAL_METHOD}); relative gains are pnc / rival − 1 with "
             "Fieller's interval, printed only when the rival's own interval excludes 0. A "
             "claim is supported when the interval lies above 0 and does not lie entirely "
             "below the claimed value; each verdict names its reading.</p>"]
    if claims.empty:
        parts.append('<p class="verdict undefined">No runs: nothing to check.</p>')
        return "\n".join(parts)
    for stream, group in claims.groupby("stream", sort=True):
        parts.append(f"<h3>{esc(stream)}</h3>")
        if not isinstance(group["pnc"].iloc[0], str):
            parts.append(f'<p class="verdict undefined">Cannot be checked: '
                         f"{text(group['reason'].iloc[0])}.</p>")
            continue
        parts.append(table(["comparison", "rival", "memory (pnc / rival)", "pairs",
                            "accuracy: pnc − rival (points)", "verdict (points)",
                            "accuracy: relative gain (%)", "verdict (relative)",
                            "locality: pnc − rival (points)", "verdict (points)",
                            "locality: relative gain (%)", "verdict (relative)"],
                           _claim_rows(group),
                           text_columns={0, 1, 2, 5, 7, 9, 11}))
        for _, c in group.iterrows():
            if not isinstance(c.get("rival"), str):
                continue
            against = f"Against {esc(c['rival'])} ({esc(COMPARISONS[c['comparison']])})"
            for reading in READINGS:
                verdict = _verdict_class(c[f"supports_claim_{reading}"])
                said = {"yes": "the measurement supports the claim",
                        "no": "the measurement does not support the claim",
                        "undefined": "the claim cannot be fully checked (see the notes); "
                                     "nothing measured contradicts it"}[verdict]
                parts.append(f'<p class="verdict {verdict}">{against}, read {reading}: '
                             f"{said}.</p>")
            if text(c.get("reason")):
                parts.append(f'<p class="note">Notes: {text(c["reason"])}.</p>')
    return "\n".join(parts)


def section_ablations(ablations: pd.DataFrame) -> str:
    parts = ['<h2>Ablations: PNC net of its router, and the routing loss</h2>',
             '<p class="note">Paired by seed, final accuracy A_T in points with its 95% '
             f"interval ({INTERVAL_METHOD}). PNC net of its router = A_T(pnc) − "
             "A_T(pnc-router): what the cloned modules add to the router's classifier alone. "
             "Routing loss = A_T(pnc-oracle) − A_T(pnc): what PNC loses by not being told the "
             "step (pnc-oracle is a reference, never a rival).</p>"]
    if ablations.empty:
        parts.append("<p>No runs.</p>")
        return "\n".join(parts)
    rows = [[esc(a["stream"]), esc(a["quantity"]), esc(f"{a['minuend']} − {a['subtrahend']}"),
             num(a["n_pairs"], 0),
             interval(a["difference_points"], a["difference_low"], a["difference_high"]),
             text(a["reason"]) or esc(a["meaning"])] for _, a in ablations.iterrows()]
    parts.append(table(["stream", "quantity", "difference", "pairs",
                        "A_T difference (points)", "note"], rows, text_columns={0, 1, 2, 5}))
    return "\n".join(parts)


def _test_cell(t: pd.Series, units: dict) -> str:
    scale = 100 if units.get(t["metric"], "fraction") == "fraction" else 1
    cell = interval(t["mean_difference"], t["difference_low"], t["difference_high"],
                    1 if scale == 100 else 3, scale)
    notes = []
    low, high = t["difference_low"], t["difference_high"]
    if finite(low) and finite(high) and (low > 0 or high < 0):
        notes.append("pnc" if (low > 0) == bool(t["higher_is_better"]) else esc(t["strategy"]))
    if isinstance(t["test_applied"], str) and t["test_applied"]:
        name = {"wilcoxon": "Wilcoxon", "t": "t"}[t["test_applied"]]
        notes.append(f"{name} p {pval(t['p_holm'])}")
    return cell + (f'<br><span class="note">{" · ".join(notes)}</span>' if notes else "")


def _friedman(tests: pd.DataFrame, ranks: pd.DataFrame, n_streams: int) -> str:
    parts = ["<h3>Across streams: Friedman and Iman-Davenport tests, average ranks</h3>"]
    friedman = tests[tests["test"] == "friedman"]
    if friedman.empty:
        parts.append(f'<p class="note">Absent: these tests rank the rivals within each stream '
                     f"and need results on at least 2 streams; this folder has {n_streams}."
                     "</p>")
        return "\n".join(parts)
    rows = []
    for _, t in friedman.iterrows():
        r = ranks[ranks["metric"] == t["metric"]].sort_values("average_rank")
        ranking = ", ".join(f"{s} {v:.2f}" for s, v in zip(r["strategy"], r["average_rank"]))
        rows.append([esc(t["metric"]), num(t["n"], 0), num(t["friedman_chi2"], 2),
                     pval(t["friedman_p"]), num(t["iman_davenport_f"], 2),
                     pval(t["iman_davenport_p"]), num(t["nemenyi_cd"], 2), esc(ranking),
                     text(t["reason"])])
    parts.append(table(["metric", "streams", "Friedman χ²", "p", "Iman-Davenport F", "p",
                        "Nemenyi CD (α 0.05)", "average ranks (1 = best)", "note"], rows,
                       text_columns={0, 7, 8}))
    return "\n".join(parts)


def section_tests(tests: pd.DataFrame, ranks: pd.DataFrame, units: dict, alpha: float,
                  n_streams: int) -> str:
    parts = ['<h2>Statistical tests</h2>',
             '<p class="note">One row per rival and ablation (references are never compared), '
             "paired by seed with pnc: each cell is the mean difference pnc − strategy (points "
             f"for fractions) with its 95% interval ({INTERVAL_METHOD}); below it, the side "
             "the interval favours when it excludes 0, and the Holm-adjusted p-value of the "
             "test that applies: the Wilcoxon signed-rank test when its smallest attainable "
             f"Holm-adjusted p (m · 2 / 2^n with n non-zero differences and m comparisons) is "
             f"below α = {alpha:g}, else the paired t-test. Effects are raw differences; "
             "tables/tests.csv holds every p-value and Cohen's d_z (undefined when a side has no "
             "variance) for every metric.</p>"]
    paired = tests[(tests["test"] == "paired") & tests["metric"].isin(HTML_TEST_METRICS)]
    if paired.empty:
        parts.append("<p>No paired comparisons (no rival strategies).</p>")
    for stream, group in paired.groupby("stream", sort=True):
        parts.append(f"<h3>{esc(stream)}</h3>")
        rows, row_cls, absent = [], [], {}
        for strategy in dict.fromkeys(group["strategy"]):
            mine = group[group["strategy"] == strategy].set_index("metric", drop=False)
            first = mine.iloc[0]
            cells = [_test_cell(mine.loc[m], units) if m in mine.index else "—"
                     for m in HTML_TEST_METRICS]
            reasons = dict.fromkeys(part for r in mine["reason"] if isinstance(r, str)
                                    for part in r.split("; ") if part)
            absent.update(dict.fromkeys(r for r in reasons if r.startswith(WILCOXON_ABSENT)))
            rows.append([esc(strategy), esc(first["role"]), num(first["n"], 0), *cells,
                         esc("; ".join(r for r in reasons if r not in absent))])
            row_cls.append("ablation" if first["role"] == "ablation" else "")
        if absent:
            parts.append(f'<p class="note">{esc("; ".join(absent))}: the paired t-test '
                         "applies instead.</p>")
        heads = [f"{METRICS_BY_NAME[m].label}: pnc − strategy" for m in HTML_TEST_METRICS]
        parts.append(table(["strategy", "role", "n", *heads, "note"], rows,
                           text_columns={0, 1, 3 + len(HTML_TEST_METRICS)},
                           row_classes=row_cls))
    parts.append(_friedman(tests, ranks, n_streams))
    return "\n".join(parts)
