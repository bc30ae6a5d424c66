"""Long runs resume at their last finished step: per-step checkpoints, for every registered
strategy, with the final record identical to an uninterrupted run's apart from timings."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import comparable, load_records, run_cli

from benchmark.run import artifacts
from benchmark.run.artifacts import RunCheckpoints
from benchmark.run.plan import ExecOptions, Experiment
from benchmark.run.runner import execute_run
from strategies import STRATEGIES

REPO = Path(__file__).resolve().parents[1]
STOP_AFTER = 2  # of split-digits' 5 steps


class Killed(BaseException):
    """Stands for the process being killed right after a checkpoint was written."""


def one_run(strategy: str, seed: int = 0):
    (cfg,) = Experiment(strategies=[strategy], seeds=[seed], train={"epochs": 1},
                        device="cpu").run_configs()
    return cfg


def stop_after_checkpoint(monkeypatch, step: int) -> None:
    """Makes a run stop (as if killed) once its checkpoint after ``step`` is written."""
    save = RunCheckpoints.save

    def save_then_stop(self, at, state):
        path = save(self, at, state)
        if at == step:
            raise Killed()
        return path

    monkeypatch.setattr(RunCheckpoints, "save", save_then_stop)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_an_interrupted_run_resumes_to_the_uninterrupted_record(strategy, tmp_path,
                                                                monkeypatch):
    """Every registered strategy: a run stopped after step 2 and resumed in a new strategy
    object gives the record of a run that was never stopped."""
    cfg = one_run(strategy)
    uninterrupted = execute_run(cfg)
    assert uninterrupted["status"] == "ok", uninterrupted["error"]
    options = ExecOptions(checkpoint_dir=tmp_path, checkpoints="always", quiet=True)
    with monkeypatch.context() as patch:
        stop_after_checkpoint(patch, STOP_AFTER)
        with pytest.raises(Killed):
            execute_run(cfg, options)
    assert sorted(p.name for p in (tmp_path / cfg.key).iterdir()) == [f"step-{STOP_AFTER}.pt"]
    torch.manual_seed(12345)  # whatever the process did meanwhile, the checkpoint decides
    resumed = execute_run(cfg, options)
    assert resumed["environment"]["resumed_after_step"] == STOP_AFTER
    assert "resumed_after_step" not in uninterrupted["environment"]
    assert comparable(resumed) == comparable(uninterrupted)
    assert len(resumed["costs"]["seconds"]) == len(uninterrupted["costs"]["seconds"])


def test_checkpoint_policies(monkeypatch, tmp_path):
    always = RunCheckpoints(tmp_path, "k", "always")
    assert [always.due(step, 5) for step in range(1, 6)] == [True] * 4 + [False]
    assert not any(RunCheckpoints(tmp_path, "k", "off").due(step, 5) for step in range(1, 6))
    auto = RunCheckpoints(tmp_path, "k", "auto")
    assert not auto.due(1, 5)  # a fresh run has not trained long enough
    monkeypatch.setattr(artifacts, "AUTO_SECONDS", 0.0)
    assert auto.due(1, 5) and not auto.due(5, 5)


def test_short_runs_write_no_checkpoint_by_default(small_copy, monkeypatch):
    saved = []
    monkeypatch.setattr(RunCheckpoints, "save", lambda self, *a: saved.append(a))
    result = run_cli(["run", "--strategies", "lwf", "--seeds", "0", "--epochs", "1",
                      "--device", "cpu", "--quiet", "--out", small_copy])
    assert result.code == 0, result.err
    assert saved == []


def test_checkpoints_are_deleted_once_the_record_is_written(tmp_path, monkeypatch):
    written = []
    save = RunCheckpoints.save
    monkeypatch.setattr(RunCheckpoints, "save",
                        lambda self, step, state: written.append(save(self, step, state)))
    out = tmp_path / "out"
    result = run_cli(["run", "--strategies", "finetune", "--seeds", "0", "--epochs", "1",
                      "--device", "cpu", "--quiet", "--checkpoints", "always", "--out", out])
    assert result.code == 0, result.err
    assert [p.name for p in written] == ["step-1.pt", "step-2.pt", "step-3.pt", "step-4.pt"]
    assert list((out / "checkpoints").iterdir()) == []


def test_an_unreadable_checkpoint_is_removed_and_the_run_starts_afresh(tmp_path, capsys):
    cfg = one_run("finetune")
    bad = tmp_path / cfg.key / "step-3.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"half a checkpoint")
    record = execute_run(cfg, ExecOptions(checkpoint_dir=tmp_path, checkpoints="always"))
    assert record["status"] == "ok"
    assert "resumed_after_step" not in record["environment"]
    assert f"checkpoint {bad} is unusable" in capsys.readouterr().err
    assert comparable(record) == comparable(execute_run(cfg))


def test_checkpoints_off_neither_writes_nor_reads_them(tmp_path, monkeypatch):
    cfg = one_run("finetune")
    with monkeypatch.context() as patch:
        stop_after_checkpoint(patch, 1)
        with pytest.raises(Killed):
            execute_run(cfg, ExecOptions(checkpoint_dir=tmp_path, checkpoints="always"))
    record = execute_run(cfg, ExecOptions(checkpoint_dir=tmp_path, checkpoints="off"))
    assert "resumed_after_step" not in record["environment"]


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_at_its_last_checkpoint(tmp_path):
    """A real kill (SIGKILL) after the first checkpoint, then the same command: the run
    resumes after the checkpointed step and records what an uninterrupted run records."""
    args = ["run", "--strategies", "finetune", "--seeds", "0", "--epochs", "30", "--device",
            "cpu", "--checkpoints", "always"]
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "benchmark", *args, "--out", str(out)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("checkpoints/*/step-*.pt")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(out.glob("runs/*.json")), "the run finished before it was killed"
    step = max(int(p.stem.split("-")[1]) for p in out.glob("checkpoints/*/step-*.pt"))

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resumes after step {step} of 5 from its checkpoint" in again.stderr
    assert list((out / "checkpoints").iterdir()) == []

    reference = tmp_path / "uninterrupted"
    assert run_cli([*args[:-1], "off", "--quiet", "--out", reference]).code == 0
    (resumed,) = load_records(out).values()
    (whole,) = load_records(reference).values()
    assert resumed["environment"]["resumed_after_step"] == step
    assert comparable(resumed) == comparable(whole)
