"""Runs that survive faults: divergence, interrupted and killed drivers, concurrent drivers."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.run.claims import CLAIMS, EMPTY_GRACE_SECONDS, Claims, Owner, process_start
from benchmark.run.plan import Experiment
from benchmark.run.queue import RunQueue, failed_record
from benchmark.run.store import TMP_PREFIX, ResultsStore, read_record

HOST = socket.gethostname()
GRID_SEEDS = [0, 1, 2, 3, 4, 5]
DRIVER_TIMEOUT = 600


def tiny_experiment(seeds) -> Experiment:
    return Experiment(strategies=["finetune"], seeds=list(seeds), train={"epochs": 1},
                      device="cpu")


def live_other_owner() -> Owner:
    """A live process of this host that is not this one (the parent, e.g. the shell)."""
    return Owner(os.getppid(), HOST, process_start(os.getppid()))


def dead_owner() -> Owner:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return Owner(child.pid, HOST, None)


# ---------------------------------------------------------------- claims


def test_a_claim_is_exclusive_until_released(tmp_path):
    mine, other = Claims(tmp_path), Claims(tmp_path, owner=live_other_owner())
    assert mine.acquire("k")
    assert not other.acquire("k")
    assert other.holder("k") == mine.owner
    mine.release("k")
    assert other.acquire("k")
    assert not mine.acquire("k")


def test_release_leaves_claims_of_others_alone(tmp_path):
    mine, other = Claims(tmp_path), Claims(tmp_path, owner=live_other_owner())
    assert other.acquire("k")
    mine.release("k")
    assert other.holder("k") == other.owner


def test_claim_of_a_dead_local_process_is_taken_over(tmp_path):
    dead = Claims(tmp_path, owner=dead_owner())
    assert dead.acquire("k")
    mine = Claims(tmp_path)
    assert mine.acquire("k")
    assert mine.holder("k") == mine.owner
    assert not list((tmp_path / CLAIMS).glob(".stale-*"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_claim_of_a_recycled_pid_is_taken_over(tmp_path):
    parent = os.getppid()
    recycled = Owner(parent, HOST, str(int(process_start(parent)) + 1))
    assert Claims(tmp_path, owner=recycled).acquire("k")
    assert Claims(tmp_path).acquire("k")


def test_claim_of_another_host_is_kept_while_refreshed(tmp_path):
    remote = Claims(tmp_path, owner=Owner(4242, "another-host", None), stale_after=60)
    mine = Claims(tmp_path, stale_after=60)
    assert remote.acquire("k")
    assert not mine.acquire("k")  # cannot tell if that driver lives: its heartbeat decides
    old = time.time() - 120
    os.utime(remote.path("k"), (old, old))
    remote.refresh()
    assert not mine.acquire("k")
    os.utime(remote.path("k"), (old, old))
    assert mine.acquire("k")


def test_empty_claim_is_respected_briefly_then_taken_over(tmp_path):
    (tmp_path / CLAIMS).mkdir()
    path = tmp_path / CLAIMS / "k.json"
    path.touch()
    mine = Claims(tmp_path)
    assert not mine.acquire("k")
    old = time.time() - EMPTY_GRACE_SECONDS - 5
    os.utime(path, (old, old))
    assert mine.acquire("k")


def test_close_releases_every_claim_held(tmp_path):
    mine = Claims(tmp_path)
    mine.start_heartbeat(interval=0.05)
    assert mine.acquire("a") and mine.acquire("b")
    time.sleep(0.2)
    mine.close()
    assert list((tmp_path / CLAIMS).iterdir()) == []


# ---------------------------------------------------------------- run queue


def test_queue_skips_runs_held_by_others_then_recorded_by_them(tmp_path):
    c0, c1 = tiny_experiment([0, 1]).run_configs()
    store = ResultsStore(tmp_path).check(create=True)
    other = Claims(tmp_path, owner=live_other_owner())
    assert other.acquire(c0.key)
    messages = []
    queue = RunQueue([c0, c1], store, Claims(tmp_path), poll_seconds=0, on_wait=messages.append)
    assert queue.take() == c1
    assert queue.take() is None and not queue.exhausted
    queue.wait()
    assert messages and f"pid {os.getppid()} on {HOST}" in messages[0]
    store.write(failed_record(c0, "recorded by the other driver"))
    other.release(c0.key)
    assert queue.take() is None
    assert queue.exhausted and queue.elsewhere == 1
    assert read_record(store.runs / f"{c0.key}.json")["error"] == "recorded by the other driver"


def test_queue_takes_over_the_runs_of_a_dead_driver(tmp_path):
    c0, c1 = tiny_experiment([0, 1]).run_configs()
    store = ResultsStore(tmp_path).check(create=True)
    assert Claims(tmp_path, owner=dead_owner()).acquire(c0.key)
    queue = RunQueue([c0, c1], store, Claims(tmp_path))
    assert [queue.take(), queue.take()] == [c0, c1]
    assert queue.exhausted and queue.elsewhere == 0


def test_queue_does_not_redo_a_run_recorded_before_it_was_claimed(tmp_path):
    (c0,) = tiny_experiment([0]).run_configs()
    store = ResultsStore(tmp_path).check(create=True)
    queue = RunQueue([c0], store, Claims(tmp_path))
    store.write(failed_record(c0, "another driver was faster"))
    assert queue.take() is None and queue.exhausted and queue.elsewhere == 1


# ---------------------------------------------------------------- divergence


def test_diverging_runs_fail_with_one_line_each_and_the_grid_goes_on(tmp_path, capsys):
    """The grid goes on, the command exits with status 1 and its last line names the failed
    runs and their record files."""
    config = tmp_path / "diverge.toml"
    config.write_text('name = "diverge"\nstrategies = ["finetune"]\nseeds = [0, 1]\n'
                      'device = "cpu"\n[train]\nepochs = 1\nlr = 1e12\noptimizer = "sgd"\n')
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["run", "--config", str(config), "--out", str(out)]) == 1
    assert [str(w.message) for w in caught if w.category is not DeprecationWarning] == []
    captured = capsys.readouterr()
    last = captured.err.splitlines()[-1]
    paths = sorted(str(p) for p in (out / "runs").glob("*.json"))
    assert re.fullmatch(r'2 runs failed: finetune seed 0 \((.+)\), finetune seed 1 '
                        r'\((.+)\); see their "error"', last), last
    assert sorted(re.findall(r"\(([^)]+\.json)\)", last)) == paths
    failed_lines = [line for line in captured.err.splitlines() if line.startswith("run ")]
    assert len(failed_lines) == 2
    for line in failed_lines:
        assert re.fullmatch(r"run [0-9a-f]{16} \(finetune, seed [01]\) failed: diverged: "
                            r"loss became (nan|-?inf) at step 1", line), line
    assert "Traceback" not in captured.err and "Warning" not in captured.err
    assert "0 done, 2 failed" in captured.out
    records = list(ResultsStore(out).records())
    assert len(records) == 2
    assert all(r["status"] == "failed" and r["error"].startswith("diverged: ") for r in records)
    assert (out / "tables" / "runs.csv").exists()


# ---------------------------------------------------------------- killed and concurrent drivers


def driver(out: Path) -> subprocess.Popen:
    """``python -m benchmark run`` on the 6-run grid, as a separate process. The child installs
    Python's Ctrl-C handler itself: an ignored SIGINT is inherited across exec (a library of
    this test process may have set it), and Python then leaves it ignored."""
    args = ["run", "--strategies", "finetune", "--seeds", *map(str, GRID_SEEDS), "--epochs",
            "1", "--device", "cpu", "--out", str(out), "--quiet"]
    start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "sys.argv = ['benchmark', *sys.argv[1:]]; runpy.run_module('benchmark', "
             "run_name='__main__', alter_sys=True)")
    return subprocess.Popen([sys.executable, "-c", start, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finished(out: Path):
    runs = out / "runs"
    return sorted(p for p in runs.glob("*.json") if not p.name.startswith(TMP_PREFIX)) \
        if runs.exists() else []


def wait_for_records(proc: subprocess.Popen, out: Path, count: int) -> None:
    deadline = time.monotonic() + DRIVER_TIMEOUT
    while len(finished(out)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no record appeared in time"
        time.sleep(0.05)


def assert_complete_grid(out: Path) -> None:
    plan = {c.key for c in tiny_experiment(GRID_SEEDS).run_configs()}
    names = sorted(p.name for p in (out / "runs").iterdir())
    assert names == sorted(f"{key}.json" for key in plan)  # each run once, no temp file
    records = [read_record(p) for p in finished(out)]  # each valid
    assert all(r["status"] == "ok" for r in records)
    assert list((out / CLAIMS).iterdir()) == []


@pytest.mark.slow
def test_interrupted_and_killed_driver_then_rerun_completes_the_grid(tmp_path):
    out = tmp_path / "grid"
    first = driver(out)
    wait_for_records(first, out, 1)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=DRIVER_TIMEOUT)
    assert first.returncode == 130, err
    assert "interrupted; finished runs are saved" in err and "Traceback" not in err
    after_ctrl_c = finished(out)
    assert not list((out / "runs").glob(TMP_PREFIX + "*"))
    assert list((out / CLAIMS).iterdir()) == []  # the run in flight was released
    [read_record(p) for p in after_ctrl_c]

    second = driver(out)
    wait_for_records(second, out, len(after_ctrl_c) + 1)
    second.kill()
    second.wait()
    after_kill = finished(out)
    [read_record(p) for p in after_kill]  # no partial record
    assert {p.name for p in after_ctrl_c} <= {p.name for p in after_kill}

    assert main(["run", "--strategies", "finetune", "--seeds", *map(str, GRID_SEEDS),
                 "--epochs", "1", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    assert_complete_grid(out)


@pytest.mark.slow
def test_two_drivers_on_one_folder_record_each_run_once(tmp_path):
    out = tmp_path / "grid"
    drivers = [driver(out), driver(out)]
    outputs = [d.communicate(timeout=DRIVER_TIMEOUT) for d in drivers]
    for d, (_, stderr) in zip(drivers, outputs):
        assert d.returncode == 0, stderr
    done = [int(re.search(r"(\d+) done", stdout).group(1)) for stdout, _ in outputs]
    assert sum(done) == len(GRID_SEEDS), outputs  # no run computed twice
    assert_complete_grid(out)
    for stdout, _ in outputs:
        assert f"{len(GRID_SEEDS)} runs:" in stdout and "0 failed" in stdout
