"""End-to-end runs through the CLI: records, tables, determinism, skipping, forgetting."""
import copy
import itertools

import pandas as pd
import pytest
from helpers import (
    GRID_ARGS,
    GRID_SEEDS,
    GRID_STRATEGIES,
    SMALL_ARGS,
    load_records,
    run_cli,
    snapshot,
)

from benchmark.core import metrics
from benchmark.data.digits import build_split_digits
from strategies import STRATEGIES

T = 5  # split-digits: 5 experiences
RECORD_FIELDS = {"key", "status", "config", "classes_per_step", "accuracy_matrix",
               "step_locality", "original_locality", "metrics", "costs", "environment"}
METRIC_NAMES = {"final_accuracy", "final_accuracy_weighted", "average_incremental_accuracy",
                "average_incremental_accuracy_weighted", "forgetting", "bwt", "locality",
                "original_locality", "old_accuracy", "new_accuracy", "base_accuracy",
                "cloned_accuracy"}
# What legitimately differs between two runs of the same configuration on the same machine.
VOLATILE_TOP = ("created", "environment")
VOLATILE_COSTS = ("seconds", "total_seconds", "peak_memory_mb")
VOLATILE_SOURCE = ("provider_seconds", "train_seconds")


def stable_part(record: dict) -> dict:
    """The record without its wall times, memory peaks, creation time and environment."""
    r = copy.deepcopy(record)
    for name in VOLATILE_TOP:
        r.pop(name)
    for name in VOLATILE_COSTS:
        r["costs"].pop(name)
    if r["costs"].get("source"):
        for name in VOLATILE_SOURCE:
            r["costs"]["source"].pop(name)
    return r


@pytest.fixture(scope="module")
def grid(grid_results):
    out, result = grid_results
    return out, result, load_records(out)


def is_fraction(v):
    return isinstance(v, float) and 0.0 <= v <= 1.0


class TestGridRecords:
    def test_cli_reports_what_it_did(self, grid):
        _, result, _ = grid
        assert result.code == 0
        assert result.out.startswith("6 runs: 6 done, 0 failed, 0 already finished;")

    def test_one_record_per_run(self, grid):
        _, _, records = grid
        assert len(records) == 6
        runs = {(r["config"]["strategy"], r["config"]["seed"]) for r in records.values()}
        assert runs == set(itertools.product(GRID_STRATEGIES, GRID_SEEDS))
        for stem, r in records.items():
            assert r["key"] == stem

    def test_spec_fields(self, grid):
        for r in grid[2].values():
            assert set(r) >= RECORD_FIELDS, RECORD_FIELDS - set(r)
            assert r["status"] == "ok" and r["error"] is None

    def test_config(self, grid):
        for r in grid[2].values():
            cfg = r["config"]
            assert cfg["stream"] == "split-digits"
            assert cfg["strategy"] in GRID_STRATEGIES and cfg["seed"] in GRID_SEEDS
            assert cfg["epochs"] == 2 and cfg["device"] == "cpu"
            defaults = {o.name: o.default for o in STRATEGIES[cfg["strategy"]].options}
            assert cfg["hparams"] == defaults

    def test_classes_per_step(self, grid):
        for r in grid[2].values():
            steps = r["classes_per_step"]
            assert [len(s) for s in steps] == [2] * T
            assert sorted(c for s in steps for c in s) == list(range(10))
            assert steps == build_split_digits(r["config"]["seed"]).classes_per_step
        orders = {r["config"]["seed"]: r["classes_per_step"] for r in grid[2].values()}
        assert orders[0] != orders[1]

    def test_accuracy_matrix_is_lower_triangular(self, grid):
        for r in grid[2].values():
            a = r["accuracy_matrix"]
            assert len(a) == T and all(len(row) == T for row in a)
            for k, row in enumerate(a):
                assert all(is_fraction(v) for v in row[: k + 1]), row
                assert all(v is None for v in row[k + 1:]), row

    def test_locality_entries(self, grid):
        for r in grid[2].values():
            loc = r["step_locality"]
            assert len(loc) == T and loc[0] is None
            assert all(is_fraction(v) for v in loc[1:])
            assert is_fraction(r["original_locality"])

    def test_metric_names(self, grid):
        for r in grid[2].values():
            assert set(r["metrics"]) == METRIC_NAMES
            for name in METRIC_NAMES - {"bwt"}:
                assert is_fraction(r["metrics"][name]), name

    def test_metrics_agree_with_the_records_own_matrix(self, grid):
        approx = pytest.approx
        for r in grid[2].values():
            a, m = r["accuracy_matrix"], r["metrics"]
            assert m["final_accuracy"] == approx(metrics.average_accuracy(a))
            assert m["average_incremental_accuracy"] == approx(
                metrics.average_incremental_accuracy(a))
            assert m["average_incremental_accuracy_weighted"] == approx(
                metrics.weighted_average_incremental_accuracy(r["correct_matrix"],
                                                              r["test_sizes"]))
            assert m["forgetting"] == approx(metrics.forgetting(a))
            assert m["bwt"] == approx(metrics.backward_transfer(a))
            assert m["old_accuracy"] == approx(metrics.old_accuracy(a))
            assert m["new_accuracy"] == approx(a[T - 1][T - 1])
            assert m["locality"] == approx(metrics.mean_locality(r["step_locality"]))
            sizes = r["test_sizes"]
            assert m["original_locality"] == approx(r["original_agreement"] / sizes[0])
            recomputed = metrics.step_locality(r["agreement_counts"], sizes)
            assert recomputed[0] is None and r["step_locality"][0] is None
            assert r["step_locality"][1:] == approx(recomputed[1:])
            assert m["final_accuracy_weighted"] == approx(
                sum(r["correct_matrix"][T - 1]) / sum(sizes))
            assert a[T - 1] == approx([c / n for c, n in zip(r["correct_matrix"][T - 1], sizes)])

    def test_costs(self, grid):
        for r in grid[2].values():
            c = r["costs"]
            assert len(c["seconds"]) == T and all(s > 0 for s in c["seconds"])
            assert len(c["peak_memory_mb"]) == T and all(m > 0 for m in c["peak_memory_mb"])
            assert len(c["parameters"]) == T and all(
                isinstance(p, int) and p > 0 for p in c["parameters"])
            assert len(c["trainable_parameters"]) == T
            for p, t in zip(c["parameters"], c["trainable_parameters"]):
                assert isinstance(t, int) and 0 < t <= p
            assert c["total_seconds"] >= sum(c["seconds"])
            assert c["source"] is None  # finetune, EWC and LwF use no source network

    def test_environment(self, grid):
        for r in grid[2].values():
            env = r["environment"]
            assert env["device"] == "cpu"
            for name in ("python", "torch", "avalanche", "host"):
                assert env[name], name


class TestGridTables:
    def test_runs_csv(self, grid):
        out, _, records = grid
        runs = pd.read_csv(out / "tables" / "runs.csv")
        assert len(runs) == 6
        assert set(runs["key"]) == set(records)
        for _, row in runs.iterrows():
            r = records[row["key"]]
            assert (row["stream"], row["strategy"], row["seed"], row["status"]) == (
                "split-digits", r["config"]["strategy"], r["config"]["seed"], "ok")
            for name in METRIC_NAMES:
                assert row[name] == pytest.approx(r["metrics"][name]), name

    def test_summary_csv(self, grid):
        out, _, records = grid
        summary = pd.read_csv(out / "tables" / "summary.csv")
        assert sorted(summary["strategy"]) == sorted(GRID_STRATEGIES)
        assert set(summary["stream"]) == {"split-digits"}
        for _, row in summary.iterrows():
            finals = [r["metrics"]["final_accuracy"] for r in records.values()
                      if r["config"]["strategy"] == row["strategy"]]
            assert row["n"] == 2
            assert row["final_accuracy_mean"] == pytest.approx(sum(finals) / 2)


class TestDeterminism:
    def test_same_seed_same_records_on_cpu(self, grid, tmp_path):
        _, _, first = grid
        args = [*GRID_ARGS, "--out", tmp_path / "again"]
        args[args.index("--seeds") + 1: args.index("--seeds") + 3] = ["0"]
        assert run_cli(args).code == 0
        second = load_records(tmp_path / "again")
        assert len(second) == 3
        for key, record in second.items():
            assert stable_part(record) == stable_part(first[key])


class TestRerun:
    def test_finished_runs_are_skipped(self, grid):
        out, _, _ = grid
        before = snapshot(out / "runs")
        result = run_cli([*GRID_ARGS, "--out", out])
        assert result.code == 0
        assert result.out.startswith("6 runs: 0 done, 0 failed, 6 already finished;")
        assert snapshot(out / "runs") == before  # same bytes, same modification times

    def test_force_recomputes(self, small_copy):
        before = snapshot(small_copy / "runs")
        records_before = load_records(small_copy)
        result = run_cli([*SMALL_ARGS, "--out", small_copy, "--force"])
        assert result.code == 0
        assert result.out.startswith("1 runs: 1 done, 0 failed, 0 already finished;")
        after = snapshot(small_copy / "runs")
        assert set(after) == set(before)
        for name in before:
            assert after[name][2] != before[name][2]  # rewritten
        records_after = load_records(small_copy)
        for key in records_before:
            assert stable_part(records_after[key]) == stable_part(records_before[key])


def test_catastrophic_forgetting_is_visible(tmp_path):
    """Finetuning learns each experience (a[k][k] >= 0.9) and forgets the old ones (A_T <= 0.3)."""
    out = tmp_path / "ft"
    result = run_cli(["run", "--stream", "split-digits", "--strategies", "finetune", "--seeds",
                      "0", "--device", "cpu", "--quiet", "--out", out])
    assert result.code == 0, result.err
    (record,) = load_records(out).values()
    assert record["config"]["epochs"] == 10  # the stream's default
    a = record["accuracy_matrix"]
    assert all(a[k][k] >= 0.9 for k in range(T)), [a[k][k] for k in range(T)]
    assert record["metrics"]["final_accuracy"] <= 0.3
    assert record["metrics"]["forgetting"] >= 0.6
