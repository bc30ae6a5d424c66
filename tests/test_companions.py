"""One training for PNC and pnc-oracle: the oracle's record, evaluated on PNC's trained modules
(``execute_runs`` with a companion), equals its own separate run apart from timings; the
queue groups them; tuning runs all its trials as one grid."""
from __future__ import annotations

from benchmark.run.plan import Experiment
from benchmark.run.queue import RunQueue
from benchmark.run.runner import execute_run, execute_runs

VOLATILE = ("created", "environment")
VOLATILE_COSTS = ("seconds", "peak_memory_mb", "total_seconds", "source")


def comparable(record: dict) -> dict:
    kept = {k: v for k, v in record.items() if k not in VOLATILE}
    kept["costs"] = {k: v for k, v in record["costs"].items() if k not in VOLATILE_COSTS}
    return kept


def configs():
    exp = Experiment(strategies=["pnc-oracle", "pnc", "finetune"], seeds=[0],
                     train={"epochs": 1})
    return {c.strategy: c for c in exp.run_configs()}


def test_the_oracle_evaluated_on_pnc_equals_its_own_run():
    runs = configs()
    alone = execute_run(runs["pnc-oracle"])
    pnc, oracle = execute_runs(runs["pnc"], companions=[runs["pnc-oracle"]])
    assert alone["status"] == oracle["status"] == pnc["status"] == "ok"
    assert comparable(oracle) == comparable(alone)
    assert oracle["key"] == runs["pnc-oracle"].key
    assert oracle["strategy_info"]["role"] == "reference"
    assert oracle["environment"]["evaluated_with"] == runs["pnc"].key
    assert oracle["accuracy_matrix"] != pnc["accuracy_matrix"]  # told the step, it differs
    assert comparable(pnc) == comparable(execute_run(runs["pnc"]))
    # the sources were PNC's: the companion trained none of them
    assert all(c is None or c is True for c in oracle["costs"]["source"]["cached"])


def test_the_queue_groups_the_oracle_under_pnc_whichever_comes_first():
    runs = configs()
    queue = RunQueue([runs["pnc-oracle"], runs["finetune"], runs["pnc"]])
    first = queue.take_group()
    assert first.primary == runs["pnc"] and first.companions == [runs["pnc-oracle"]]
    second = queue.take_group()
    assert second.primary == runs["finetune"] and second.companions == []
    assert queue.take_group() is None and queue.exhausted


def test_the_oracle_alone_trains_its_own_modules():
    runs = configs()
    queue = RunQueue([runs["pnc-oracle"]])
    group = queue.take_group()
    assert group.primary == runs["pnc-oracle"] and group.companions == []


def test_tuning_runs_every_trial_in_one_grid(tmp_path, monkeypatch):
    from benchmark.run import grid
    from benchmark.tune import sweep

    calls = []
    real = grid.run_experiment

    def counting(exp, *args, **kwargs):
        calls.append(exp)
        return real(exp, *args, **kwargs)

    monkeypatch.setattr(grid, "run_experiment", counting)
    sweep.run_tuning("split-digits", ["finetune", "lwf"], [100], 2, 0.2, tmp_path / "t",
                     {"lwf": {"alpha": [0.5, 1.0]}}, {"epochs": 1},
                     sweep.ExecOptions(), quiet=True)
    planned = sweep.plan_trials(["finetune", "lwf"], 2, {"lwf": {"alpha": [0.5, 1.0]}})
    assert len(calls) == 1 and isinstance(calls[0], list)
    assert len(planned["finetune"]) == 1 and len(planned["lwf"]) == 2  # finetune is not tuned
    assert len(calls[0]) == sum(len(t) for t in planned.values()) == 3
