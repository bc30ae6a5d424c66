"""Roles, memory, ablations, the claim check against memory, intervals within range, labels
and training curves in the reports, from hand-written records."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from test_report import make_record, read_table, write_records

from benchmark.core.metrics import METRICS
from benchmark.report import build, comparisons, formats, tables
from benchmark.report import claim as claim_module
from benchmark.report.ablations import ablation_table
from benchmark.report.memory_figure import pareto_front
from benchmark.report.training_figure import curve_points

ROUTER_INFO = {"family": "cloning", "role": "ablation", "note": "", "uses_source": True,
               "keeps_samples": False}
ORACLE_INFO = {"family": "cloning", "role": "reference", "note": "oracle routing",
               "uses_source": True, "keeps_samples": False}
MEMORY = (700_000, 0)


def role_records(stream="s"):
    """pnc, its router ablation (more accurate than every rival), the oracle (a reference),
    ewc and lwf as current records, and joint as an old record (no strategy_info)."""
    finals = {"pnc": [0.80, 0.85, 0.90], "pnc-router": [0.70, 0.80, 0.90],
              "pnc-oracle": [0.90, 0.90, 0.95], "ewc": [0.40, 0.42, 0.44],
              "lwf": [0.50, 0.52, 0.51]}
    info = {"pnc-router": ROUTER_INFO, "pnc-oracle": ORACLE_INFO}
    recs = [make_record(stream, name, seed, final=f, memory=MEMORY, info=info.get(name))
            for name, values in finals.items() for seed, f in enumerate(values)]
    recs += [make_record(stream, "joint", seed, final=0.97) for seed in range(3)]
    return recs, finals


def test_roles_from_records_and_registry():
    recs, _ = role_records()
    runs = tables.runs_table(recs)
    roles = tables.label_roles(runs)
    assert roles == {"pnc": "rival", "pnc-router": "ablation", "pnc-oracle": "reference",
                     "ewc": "rival", "lwf": "rival", "joint": "reference"}  # joint: registry
    assert tables.strategy_order(runs["label"], roles) == [
        "joint", "pnc-oracle", "pnc", "pnc-router", "ewc", "lwf"]
    tests = comparisons.paired_tests(runs, metrics=["final_accuracy"])
    assert dict(zip(tests["strategy"], tests["role"])) == {"pnc-router": "ablation",
                                                            "ewc": "rival", "lwf": "rival"}
    summary = tables.summary_table(runs)
    best = formats.best_mask(summary)
    best_labels = set(summary.loc[best["final_accuracy"], "label"])
    assert best_labels == {"pnc"}  # the router (0.80) and references are never bold
    shown = formats.display_summary(summary).set_index("Strategy").index
    assert {"pnc-oracle (oracle routing)", "joint (upper bound)", "pnc-router (ablation)"} <= set(
        shown)
    claim = claim_module.claim_table(runs)
    assert "pnc-router" not in " ".join(claim["candidates"].fillna(""))


def test_ranks_leave_out_references_and_ablations():
    recs = role_records("a")[0] + role_records("b")[0]
    _, ranks = comparisons.friedman_tests(tables.runs_table(recs), metrics=["final_accuracy"])
    assert set(ranks["strategy"]) == {"pnc", "ewc", "lwf"}


def test_ablations_by_hand():
    recs, finals = role_records()
    recs += [make_record("t", "pnc", seed, final=0.8) for seed in range(2)]
    table = ablation_table(tables.runs_table(recs)).set_index(["stream", "quantity"])
    net = table.loc[("s", "PNC net of its router")]
    # pnc - router per seed: 10, 5, 0 points; 3 pairs: [min, max]
    assert net["n_pairs"] == 3 and net["difference_points"] == pytest.approx(5.0)
    assert (net["difference_low"], net["difference_high"]) == pytest.approx((0.0, 10.0))
    loss = table.loc[("s", "routing loss")]
    # oracle - pnc: 10, 5, 5 points
    assert loss["difference_points"] == pytest.approx(20 / 3)
    assert (loss["difference_low"], loss["difference_high"]) == pytest.approx((5.0, 10.0))
    absent = table.loc[("t", "PNC net of its router")]
    assert absent["n_pairs"] == 0 and math.isnan(absent["difference_points"])
    assert "pnc-router has no successful runs" in absent["reason"]


def memory_records(pnc_bytes=MEMORY):
    """pnc; finetune and ewc (parameter tuning, ewc over pnc's memory); dynamic-expansion
    within pnc's memory; three seeds each."""
    spec = {"pnc": ([0.90, 0.92, 0.94], pnc_bytes, [0.99, 0.98, 0.99]),
            "finetune": ([0.30, 0.31, 0.29], (100_000, 0), [0.0, 0.0, 0.002]),
            "ewc": ([0.40, 0.41, 0.42], (100_000, 1_000_000), [0.10, 0.12, 0.11]),
            "dynamic-expansion": ([0.60, 0.70, 0.65], (300_000, 200_000), [0.5, 0.6, 0.55])}
    return [make_record("s", name, seed, final=f, locality=loc[seed], memory=memory)
            for name, (finals, memory, loc) in spec.items() for seed, f in enumerate(finals)]


def test_memory_in_runs_summary_and_markdown():
    runs = tables.runs_table(memory_records())
    ewc = runs[runs["strategy"] == "ewc"].iloc[0]
    assert (ewc["model_bytes"], ewc["state_bytes"], ewc["total_bytes"]) == (
        100_000, 1_000_000, 1_100_000)
    summary = tables.summary_table(runs).set_index("label")
    assert summary.loc["pnc", "total_bytes_mean"] == 700_000
    assert summary.loc["dynamic-expansion", "state_bytes_mean"] == 200_000
    md = formats.summary_markdown(summary.reset_index())
    assert "Memory ↓" in md and "700.0 kB" in md and "1.1 MB" in md


def test_claim_checked_twice():
    claim = claim_module.claim_table(tables.runs_table(memory_records())).set_index(
        "comparison")
    tuning, memory = claim.loc["parameter-tuning"], claim.loc["memory"]
    assert tuning["rival"] == "ewc" and tuning["candidates"] == "ewc, finetune"
    # ewc needs 1.1 MB > pnc's 0.7 MB; dynamic-expansion 0.5 MB and finetune 0.1 MB fit
    assert memory["rival"] == "dynamic-expansion"
    assert memory["candidates"] == "dynamic-expansion, finetune"
    assert memory["pnc_total_bytes"] == 700_000 and memory["rival_total_bytes"] == 500_000
    # pnc - dynamic-expansion: 30, 22, 29 points; 3 pairs: [min, max]
    assert memory["accuracy_difference_points"] == pytest.approx(27.0)
    assert (memory["accuracy_difference_low"], memory["accuracy_difference_high"]) == (
        pytest.approx(22.0), pytest.approx(30.0))
    assert memory["accuracy_verdict_points"].startswith("supported")
    assert memory["locality_difference_points"] == pytest.approx(100 * (0.9867 - 0.55),
                                                                 abs=0.01)
    assert math.isfinite(memory["locality_gain"])  # the rival's locality excludes 0


def test_no_relative_gain_against_a_locality_indistinguishable_from_zero():
    runs = tables.runs_table([r for r in memory_records() if r["config"]["strategy"]
                              in ("pnc", "finetune")])
    row = claim_module.claim_table(runs).set_index("comparison").loc["parameter-tuning"]
    assert row["rival"] == "finetune"
    assert row["locality_rival_low"] == 0.0  # locality 0, 0, 0.002: the interval includes 0
    assert math.isnan(row["locality_gain"]) and math.isnan(row["locality_gain_low"])
    assert "includes 0" in row["reason"]
    # pnc's lower bound (0.98) is more than 1.5 x the rival's upper bound (0.002)
    assert row["locality_verdict_relative"].startswith("supported: PNC keeps significantly "
                                                       "more")


def test_no_rival_within_pncs_memory_is_said():
    runs = tables.runs_table(memory_records(pnc_bytes=(50_000, 0)))
    row = claim_module.claim_table(runs).set_index("comparison").loc["memory"]
    assert not isinstance(row["rival"], str)
    assert "no rival needs no more memory than pnc (50,000 bytes)" in row["reason"]


def test_old_records_without_memory_still_build(tmp_path):
    records = [make_record("s", name, seed, final=0.5 + 0.1 * seed)
               for name in ("pnc", "ewc") for seed in range(2)]
    write_records(tmp_path, records)
    build.build_report(tmp_path, quiet=True)
    summary = read_table(tmp_path, "summary.csv")
    assert summary["total_bytes_mean"].isna().all()
    assert summary["average_incremental_accuracy_weighted_mean"].isna().all()
    md = (tmp_path / "tables" / "summary.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| s ") and "ewc" in line)
    assert row.rstrip(" |").split("|")[-2].strip() == "—"  # Memory, before Train
    claim = read_table(tmp_path, "claim.csv").set_index("comparison")
    assert "pnc's memory is not recorded" in claim.loc["memory", "reason"]
    assert not list((tmp_path / "figures").glob("memory__*.png"))


def test_summary_intervals_stay_within_the_metric_ranges(tmp_path):
    """Values at the edges of [0, 1], where a t-interval leaves it (issue 11: 91.4-100.8%)."""
    orig = [1.0, 0.99, 1.0, 0.95, 1.0]
    records = [make_record("s", "pnc", seed, final=0.999 - 0.01 * (seed % 2), forgetting=0.0,
                           locality=1.0 - 0.02 * (seed == 3), orig=orig[seed])
               for seed in range(5)]
    records += [make_record("s", "lwf", seed, final=0.2, forgetting=0.8,
                            locality=0.002 * (seed == 1), orig=0.0) for seed in range(5)]
    write_records(tmp_path, records)
    build.build_report(tmp_path, quiet=True)
    summary = read_table(tmp_path, "summary.csv")
    checked = 0
    for m in METRICS:
        for bound in ("ci_low", "ci_high"):
            values = summary[f"{m.name}_{bound}"].dropna()
            assert (values >= m.low - 1e-12).all() and (values <= m.high + 1e-12).all(), m.name
            checked += len(values)
    assert checked > 20
    pnc = summary.set_index("label").loc["pnc"]
    t_high = pnc["original_locality_mean"] + 2.776445 * pnc["original_locality_std"] / math.sqrt(5)
    assert pnc["original_locality_ci_high"] <= 1.0 < t_high  # where a t-interval would leave


def test_labels_name_each_differing_option_once():
    recs = [make_record("s", "finetune", 0, epochs=e) for e in (1, 10)]
    labels = set(tables.runs_table(recs)["label"])
    assert labels == {"finetune[epochs=1]", "finetune[epochs=10]"}  # not epochs=1, epochs=1
    other = make_record("s", "finetune", 0, epochs=10)
    other["config"]["train"]["epochs"] = 3  # the two entries now disagree: full names
    other["key"] = "f" * 16
    labels = set(tables.runs_table([recs[0], other])["label"])
    assert labels == {"finetune[epochs=1, train.epochs=1]",
                      "finetune[epochs=10, train.epochs=3]"}


def test_loss_table_and_curve_positions():
    recs = [make_record("s", "ewc", seed, memory=MEMORY) for seed in (0, 1)]
    losses = tables.loss_table(recs)
    assert len(losses) == 2 * 2 * 2  # seeds x steps x epochs
    points = curve_points(losses)
    first_step = points[points["step"] == 1]
    assert list(first_step["x"]) == [1.0, 1.5]  # two entries share step 1
    assert list(first_step["loss"]) == pytest.approx([1.5, 0.5])  # mean of 1 + seed, 0.5
    assert tables.loss_table([make_record("s", "ewc", 0)]).empty  # old records: none


def test_pareto_front_by_hand():
    cost = np.array([100.0, 200.0, 150.0, 300.0, np.nan, 200.0])
    value = np.array([30.0, 90.0, 20.0, 90.0, 99.0, 95.0])
    # 100/30 is cheapest; 200/95 beats 200/90 and 300/90; 150/20 is dominated by 100/30
    assert list(pareto_front(cost, value)) == [True, False, False, False, False, True]


@pytest.fixture(scope="module")
def role_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("roles")
    write_records(root, role_records()[0])
    build.build_report(root, quiet=True)
    return root


def test_report_sections_for_roles_memory_and_ablations(role_report):
    page = (role_report / "report.html").read_text(encoding="utf-8")
    assert "<pre>" not in page and page.count("<details>") == 1  # no experiment.json here
    assert "Ablations: PNC net of its router" in page and "+5.0 [+0.0, +10.0]" in page
    assert "Absent: these tests rank the rivals within each stream" in page
    tests_section = page.split('<section id="tests">')[1].split("</section>")[0]
    body = tests_section.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr") == 3  # one row per rival and ablation: ewc, lwf, pnc-router
    assert "pnc-oracle" not in tests_section and "joint" not in tests_section
    figures = {p.name for p in (role_report / "figures").glob("*.png")}
    assert {"memory__s.png", "training_curves.png"} <= figures
    ablations = pd.read_csv(role_report / "tables" / "ablations.csv")
    assert list(ablations["quantity"]) == ["PNC net of its router", "routing loss"]
