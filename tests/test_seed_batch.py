"""Seeds trained together (``benchmark.run.seed_batch``): each seed's batched record against its
ordinary run (``execute_run``), ragged seeds, runs that cannot be batched, the option's plumbing
and ``clonebench perf --seed-batch``.

Why not bitwise: the batched pass multiplies stacked matrices (``bmm``) and, on padded batches,
takes BatchNorm statistics over masked rows, so its sums run in another order than a separate
run's; each step differs in the last bits (~1e-8). Training then amplifies such differences by
however much the run itself is sensitive to its inputs. With SGD at lr 0.01 (the regime of the
main test) a 1e-7 change of theta_0 moves seeds 0 and 2 by ~1e-6 and the batched records stay as
close: every parameter and buffer within ``WEIGHT_TOL`` = 1e-4 (max abs difference), loss curves
within ``LOSS_TOL`` = 1e-4, each cell of the correct matrix within ``CELL_TOL`` = 1 test sample.
With Adam (the stream's default) no such bound on the weights holds, for the ordinary run
itself: the bias of a Linear layer followed by BatchNorm has a gradient that is exactly zero in
exact arithmetic, so it is pure rounding noise, which Adam normalises into steps of size lr; a
1e-7 change of theta_0 already moves those biases by ~0.1 and the final predictions by a few
test samples. The Adam test checks the predictions within ``ADAM_CELL_TOL`` = 4 test samples
per cell (measured: at most 2).
"""
from __future__ import annotations

import re

import pytest
import torch
from helpers import comparable, load_records, run_cli

import benchmark.run.protocol as protocol
import benchmark.run.seed_batch as seed_batch
from benchmark.core.errors import UsageError
from benchmark.run.grid import _with_run_files
from benchmark.run.plan import ExecOptions, Experiment
from benchmark.run.runner import execute_run
from benchmark.run.seed_batch import execute_seed_group, seed_groups

WEIGHT_TOL, LOSS_TOL, CELL_TOL, AGREE_TOL, ADAM_CELL_TOL = 1e-4, 1e-4, 1, 3, 4
SGD = {"epochs": 1, "optimizer": "sgd", "lr": 0.01}
SEEDS = [0, 2]
CASES = {
    "finetune": ("finetune", {}),
    "joint": ("joint", {}),
    "joint-theta0": ("joint", {"init": "theta0"}),
    "ewc": ("ewc", {"ewc_lambda": 100.0}),
    "ewc-online": ("ewc", {"ewc_lambda": 100.0, "mode": "online"}),
    "lwf": ("lwf", {}),
}


def configs(strategy, hparams, seeds, train):
    return Experiment(streams=["split-digits"], strategies=[strategy], seeds=list(seeds),
                      device="cpu", train=dict(train),
                      strategy_options={strategy: hparams} if hparams else {}).run_configs()


def both_ways(runs, tmp_path):
    """(separate records, batched records, separate models, batched models)."""
    out = {}
    for way in ("separate", "batched"):
        options = ExecOptions(model_dir=tmp_path / way)
        records = ([execute_run(c, options) for c in runs] if way == "separate"
                   else execute_seed_group(runs, options))
        assert [r["status"] for r in records] == ["ok"] * len(runs), \
            [r["error"] for r in records]
        models = [torch.load(tmp_path / way / f"{r['key']}.pt", weights_only=False)
                  for r in records]
        out[way] = records, models
    return (*out["separate"], *out["batched"])


def assert_same_record(a: dict, b: dict, cells: int, loss: float, agree=None) -> None:
    """``b`` (batched) has ``a``'s (separate) schema and identity, the same per-step facts and
    costs apart from times, and results within the given tolerances."""
    assert a.keys() == b.keys()
    for field in ("schema", "key", "status", "config", "classes_per_step", "test_sizes",
                  "sample_bytes", "strategy_info"):
        assert a[field] == b[field], field
    assert b["environment"]["seed_batch"] >= 2 and "seed_batch" not in a["environment"]
    assert a["environment"].keys() | {"seed_batch"} == b["environment"].keys()
    assert a["costs"].keys() == b["costs"].keys()
    for field in ("parameters", "trainable_parameters", "model_bytes", "state_bytes",
                  "memory_kind", "source"):
        assert a["costs"][field] == b["costs"][field], field
    assert len(a["costs"]["seconds"]) == len(b["costs"]["seconds"])
    assert len(a["steps"]) == len(b["steps"])
    for sa, sb in zip(a["steps"], b["steps"]):
        assert sa.keys() == sb.keys()
        assert {k: v for k, v in sa.items() if k != "loss_curve"} == \
            {k: v for k, v in sb.items() if k != "loss_curve"}
        assert [(e["phase"], e["epoch"]) for e in sa["loss_curve"]] == \
            [(e["phase"], e["epoch"]) for e in sb["loss_curve"]]
        for ea, eb in zip(sa["loss_curve"], sb["loss_curve"]):
            assert abs(ea["loss"] - eb["loss"]) <= loss, (ea, eb)
    for row_a, row_b in zip(a["correct_matrix"], b["correct_matrix"]):
        assert [x is None for x in row_a] == [x is None for x in row_b]
        assert all(abs(x - y) <= cells for x, y in zip(row_a, row_b) if x is not None)
    if agree is not None:
        for row_a, row_b in zip(a["agreement_counts"][1:], b["agreement_counts"][1:]):
            assert all(abs(x - y) <= agree for x, y in zip(row_a, row_b))
    assert a["metrics"].keys() == b["metrics"].keys()
    smallest = min(a["test_sizes"])
    assert abs(a["metrics"]["final_accuracy"] - b["metrics"]["final_accuracy"]) \
        <= cells / smallest + 1e-12


def assert_close_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if key.endswith("num_batches_tracked"):
            assert torch.equal(sa[key], sb[key]), key
        else:
            assert (sa[key] - sb[key]).abs().max() <= WEIGHT_TOL, key


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_seeds_batched_record_equals_its_separate_run(case, tmp_path):
    strategy, hparams = CASES[case]
    runs = configs(strategy, hparams, SEEDS, SGD)
    sizes = [[len(y) for _, y in protocol.run_data(c, ExecOptions()).train] for c in runs]
    assert sizes[0] != sizes[1]  # the seeds' steps differ in size: ragged batches throughout
    sep, sep_models, bat, bat_models = both_ways(runs, tmp_path)
    for a, b, ma, mb in zip(sep, bat, sep_models, bat_models):
        assert_same_record(a, b, CELL_TOL, LOSS_TOL, AGREE_TOL)
        assert_close_weights(ma, mb)


def test_with_adam_the_predictions_stay_within_a_few_test_samples(tmp_path):
    runs = configs("finetune", {}, [0, 1, 2], {"epochs": 1})
    assert runs[0].train["optimizer"] == "adam"
    sep, _, bat, _ = both_ways(runs, tmp_path)
    for a, b in zip(sep, bat):
        assert_same_record(a, b, ADAM_CELL_TOL, 1e-3)


@pytest.mark.parametrize("strategy", ["finetune", "joint"])
def test_a_seed_with_far_fewer_samples_stops_stepping_when_its_batches_run_out(
        strategy, monkeypatch, tmp_path):
    """Seed 2 keeps 40% of every step's training data: it runs out of batches long before seed
    0 in every epoch, and must then take no optimizer step (with momentum, one spurious step
    would move every weight far beyond the tolerance)."""
    original = protocol.run_data

    def cut(cfg, options):
        data = original(cfg, options)
        if cfg.seed == 2:
            data.train = [(x[:len(x) * 2 // 5], y[:len(y) * 2 // 5]) for x, y in data.train]
        return data

    monkeypatch.setattr(protocol, "run_data", cut)
    monkeypatch.setattr(seed_batch, "run_data", cut)
    runs = configs(strategy, {}, SEEDS, SGD)
    sep, sep_models, bat, bat_models = both_ways(runs, tmp_path)
    assert sep[1]["steps"][0].get("training_samples", 0) < sep[0]["steps"][0].get(
        "training_samples", 1)
    for a, b, ma, mb in zip(sep, bat, sep_models, bat_models):
        assert_same_record(a, b, CELL_TOL, LOSS_TOL, AGREE_TOL)
        assert_close_weights(ma, mb)


def test_runs_that_cannot_be_batched_run_as_usual():
    runs = configs("replay", {}, SEEDS, {"epochs": 1})
    mixed = configs("finetune", {}, SEEDS, {"epochs": 1}) + runs
    groups = seed_groups(mixed, ExecOptions())
    assert [[c.strategy for c in g] for g in groups] == [["finetune"] * 2, ["replay"], ["replay"]]
    assert [len(g) for g in seed_groups(mixed, ExecOptions(loggers=("csv",)))] == [1] * 4
    records = execute_seed_group(runs)
    for record, cfg in zip(records, runs):
        assert "seed_batch" not in record["environment"]
        assert comparable(record) == comparable(execute_run(cfg))


def test_a_group_is_one_configuration():
    runs = configs("finetune", {}, [0], {"epochs": 1}) + configs("finetune", {}, [1],
                                                                  {"epochs": 2})
    assert len(seed_groups(runs, ExecOptions())) == 2
    records = execute_seed_group(runs)
    assert all("seed_batch" not in r["environment"] for r in records)


def test_a_diverging_seed_fails_alone(monkeypatch):
    runs = configs("finetune", {}, SEEDS, {"epochs": 1})
    original = protocol.run_data

    def poisoned(cfg, options):
        data = original(cfg, options)
        if cfg.seed == 2:
            data.decode = lambda x: x.float() * float("nan")
        return data

    monkeypatch.setattr(seed_batch, "run_data", poisoned)
    good, bad = execute_seed_group(runs)
    assert good["status"] == "ok" and bad["status"] == "failed"
    assert bad["error"] == "diverged: loss became nan at step 1"
    assert good["environment"]["seed_batch"] == 2


def test_the_cli_flag_batches_eligible_runs_and_runs_the_others(tmp_path):
    out = tmp_path / "results"
    result = run_cli(["run", "--stream", "split-digits", "--strategies", "finetune,replay",
                      "--seeds", "0", "1", "--epochs", "1", "--device", "cpu", "--quiet",
                      "--batch-seeds", "--out", out])
    assert result.code == 0, result.err
    records = list(load_records(out).values())
    batched = {r["config"]["strategy"]: r["environment"].get("seed_batch") for r in records}
    assert len(records) == 4 and batched == {"finetune": 2, "replay": None}


def test_batch_seeds_is_off_by_default_and_local_only(tmp_path):
    assert ExecOptions().batch_seeds is False
    with pytest.raises(UsageError, match="--batch-seeds"):
        _with_run_files(ExecOptions(batch_seeds=True), tmp_path, "ray", False)
    assert _with_run_files(ExecOptions(batch_seeds=True), tmp_path, "local", False).batch_seeds



def test_perf_prints_the_speed_up_of_seeds_trained_together():
    result = run_cli(["perf", "--seed-batch", "finetune", "--seed-count", "2", "--epochs", "1",
                      "--repeats", "1", "--device", "cpu"])
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("strategy "))
    row = dict(zip(re.split(r"\s{2,}", lines[header]), re.split(r"\s{2,}", lines[header + 1])))
    assert row["strategy"] == "finetune" and row["seeds"] == "2"
    assert float(row["speed-up"]) > 0 and float(row["train speed-up"]) > 0
    assert int(row["max cell diff"]) <= ADAM_CELL_TOL
    bad = run_cli(["perf", "--seed-batch", "replay", "--device", "cpu"])
    assert bad.code == 2 and "cannot train its seeds together" in bad.err
