"""``clonebench compare DIR_A DIR_B`` on hand-written records: the overlap rule, strategies in
one folder only, exit statuses."""
from __future__ import annotations

import math

import pytest
from helpers import run_cli
from test_report import make_record, write_records

from benchmark.report import compare, tables


def summary_of(records):
    return tables.summary_table(tables.runs_table(records))


def folder_records(finals: dict[str, list[float]]):
    return [make_record("s", name, seed, final=f) for name, values in finals.items()
            for seed, f in enumerate(values)]


A = {"pnc": [0.80, 0.85, 0.90], "ewc": [0.40, 0.42, 0.44], "lwf": [0.5, 0.5, 0.5]}
B = {"pnc": [0.82, 0.86, 0.90], "ewc": [0.60, 0.62, 0.64], "finetune": [0.2, 0.2, 0.2]}


def test_bounds_and_overlap():
    assert compare.bounds(0.5, 0.4, 0.6) == (0.4, 0.6)
    assert compare.bounds(0.5, math.nan, math.nan) == (0.5, 0.5)  # one seed: the value
    assert compare.overlap((0.4, 0.6), (0.6, 0.9))  # touching intervals share a point
    assert not compare.overlap((0.4, 0.6), (0.61, 0.9))
    assert compare.overlap((0.5, 0.5), (0.5, 0.5)) and not compare.overlap((0.5, 0.5),
                                                                           (0.51, 0.51))


def test_compare_summaries_by_hand():
    rows = compare.compare_summaries(summary_of(folder_records(A)), summary_of(
        folder_records(B)))
    acc = rows[rows["metric"] == "final_accuracy"].set_index("label")
    assert set(acc.index) == {"pnc", "ewc"}
    # 3 seeds: intervals [min, max]; pnc [0.80, 0.90] and [0.82, 0.90] overlap
    assert acc.loc["pnc", "status"] == "agree"
    assert acc.loc["pnc", "difference"] == pytest.approx(0.86 - 0.85)
    # ewc [0.40, 0.44] and [0.60, 0.64] do not
    assert acc.loc["ewc", "status"] == "differ"
    assert (acc.loc["ewc", "low_b"], acc.loc["ewc", "high_b"]) == pytest.approx((0.6, 0.64))
    a, b = summary_of(folder_records(A)), summary_of(folder_records(B))
    assert compare.only_in(a, b) == ["s/lwf"] and compare.only_in(b, a) == ["s/finetune"]


def test_one_seed_and_failed_runs():
    one_a = summary_of([make_record("s", "pnc", 0, final=0.8)])
    one_b = summary_of([make_record("s", "pnc", 0, final=0.8)])
    rows = compare.compare_summaries(one_a, one_b)
    assert (rows["status"] == "agree").all()  # equal single values agree
    moved = summary_of([make_record("s", "pnc", 0, final=0.81)])
    rows = compare.compare_summaries(one_a, moved)
    assert rows.set_index("metric").loc["final_accuracy", "status"] == "differ"
    failed = summary_of([make_record("s", "pnc", 0, status="failed", error="diverged")])
    rows = compare.compare_summaries(one_a, failed)
    assert len(rows) and (rows["status"] == "differ").all()  # every run failed in B


def test_command_exit_statuses(tmp_path):
    a = write_records(tmp_path / "a", folder_records(A))
    b = write_records(tmp_path / "b", folder_records(B))
    same = write_records(tmp_path / "same", folder_records(A))
    result = run_cli(["compare", a, b])
    assert result.code == 1
    assert "Rule: a metric agrees when its 95% intervals" in result.out
    ewc = next(line for line in result.out.splitlines() if line.startswith("s ") and " ewc " in
               line)
    assert "DIFFER: final_accuracy 42.0 [40.0, 44.0] vs 62.0 [60.0, 64.0]" in ewc
    assert "Only in A: s/lwf" in result.out and "Only in B: s/finetune" in result.out
    assert "1 of 2 strategies in both folders agree on every metric." in result.out
    agreed = run_cli(["compare", a, same])
    assert agreed.code == 0 and "3 of 3 strategies" in agreed.out
    bad = run_cli(["compare", a, tmp_path])
    assert bad.code == 2 and bad.err.strip().startswith("clonebench: error:")
    assert len(bad.err.strip().splitlines()) == 1 and "not a results folder" in bad.err
