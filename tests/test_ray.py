"""The Ray backend, on a real local Ray instance started once for this module."""
from __future__ import annotations

import os
import re
import socket
import sys

import pytest
import torch

from benchmark.cli import main
from benchmark.core.errors import UsageError
from benchmark.run.grid import run_experiment
from benchmark.run.plan import ExecOptions, Experiment
from benchmark.run.queue import RunQueue
from benchmark.run.store import ResultsStore

# Fields that legitimately differ between two executions of the same run: when and where it
# ran, and what it cost in time and memory (the source block holds its times and cache hits).
VOLATILE = ("created", "environment")
VOLATILE_COSTS = ("seconds", "peak_memory_mb", "total_seconds", "source")
CPUS_PER_RUN = 2


def tiny_experiment(seeds=(0, 1), **train) -> Experiment:
    return Experiment(strategies=["finetune"], seeds=list(seeds),
                      train={"epochs": 1, **train}, device="cpu")


def comparable(record: dict) -> dict:
    kept = {k: v for k, v in record.items() if k not in VOLATILE}
    kept["costs"] = {k: v for k, v in record["costs"].items() if k not in VOLATILE_COSTS}
    return kept


def records_by_key(out) -> dict:
    return {r["key"]: r for r in ResultsStore(out).records()}


@pytest.fixture(scope="module")
def ray_session():
    from benchmark.run.ray_backend import RaySession

    with RaySession() as session:
        yield session


def dying_worker(folder: str, times: int, original):
    """A task body that records each attempt as ``folder/attempt-<i>`` and kills its own worker
    process for attempts i <= ``times``, then runs ``original``."""
    def run(*args):
        os.makedirs(folder, exist_ok=True)
        attempt = 1
        while True:
            try:
                os.close(os.open(os.path.join(folder, f"attempt-{attempt}"),
                                 os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                attempt += 1
        if attempt <= times:
            os._exit(1)
        return original(*args)

    return run


@pytest.fixture
def kill_worker(tmp_path, monkeypatch):
    """Replaces the Ray task body by one whose worker dies on its first ``times`` attempts
    (this module is shipped to the workers by value); returns the folder counting attempts."""
    import ray.cloudpickle

    from benchmark.run import ray_backend

    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    folder = tmp_path / "attempts"

    def arm(times: int = 1):
        monkeypatch.setattr(ray_backend, "run_on_worker",
                            dying_worker(str(folder), times, ray_backend.run_on_worker))
        return folder

    yield arm
    ray.cloudpickle.unregister_pickle_by_value(module)


@pytest.mark.ray
def test_the_local_instance_talks_over_loopback_only(ray_session):
    """The local Ray instance started by the suite (and its tests) takes 127.0.0.1 as its node
    address, not the machine's network address, and the switch is undone afterwards."""
    import ray

    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert [n["NodeManagerAddress"] for n in nodes] == ["127.0.0.1"]
    assert ray.util.get_node_ip_address() == "127.0.0.1"


def test_the_loopback_switch_is_undone_after_the_session(monkeypatch):
    from benchmark.run import ray_backend

    ray_backend.require_ray()
    from ray._private import ray_constants

    monkeypatch.setenv(ray_backend.CLUSTER_SWITCH, "1")
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    session = ray_backend.RaySession()
    session._loopback_only()
    assert os.environ[ray_backend.CLUSTER_SWITCH] == "0"
    assert ray_constants.ENABLE_RAY_CLUSTER is False
    session.__exit__(None, None, None)
    assert os.environ[ray_backend.CLUSTER_SWITCH] == "1"
    assert ray_constants.ENABLE_RAY_CLUSTER is True


def test_ray_refuses_options_that_write_where_runs_execute(tmp_path):
    exp = tiny_experiment()
    for kwargs, flag in ((dict(save_models=True), "--save-models"),
                         (dict(exec_options=ExecOptions(loggers=("csv",))), "--log"),
                         (dict(exec_options=ExecOptions(checkpoints="always")),
                          "--checkpoints always")):
        with pytest.raises(UsageError, match=f"{flag} writes files where each run executes"):
            run_experiment(exp, tmp_path / "out", backend="ray", quiet=True, **kwargs)
    assert not (tmp_path / "out").exists()


def test_missing_ray_is_one_usage_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "out"
    assert main(["run", "--backend", "ray", "--strategies", "finetune", "--seeds", "0",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clonebench: error: --backend ray needs Ray") and err.count("\n") == 1
    assert "pip install 'clonebench[ray]'" in err
    assert not out.exists()


def test_unreachable_or_malformed_address_is_a_usage_error():
    from benchmark.run.ray_backend import _check_reachable

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nobody listens there
    with pytest.raises(UsageError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(UsageError, match="expected HOST:PORT"):
        _check_reachable("head-node")


@pytest.mark.ray
def test_ray_records_equal_local_records_and_arrive_one_by_one(ray_session, tmp_path,
                                                               monkeypatch):
    from benchmark.run.ray_backend import ray_backend

    exp = tiny_experiment()
    threads = torch.get_num_threads()
    same = ExecOptions(threads=CPUS_PER_RUN)  # the Ray runs use as many threads as CPUs
    try:
        run_experiment(exp, tmp_path / "local", same, quiet=True, build_report=False)
    finally:
        torch.set_num_threads(threads)

    queue = RunQueue(exp.run_configs())
    store = ResultsStore(tmp_path / "ray")
    pending_at_first_record = None
    for record in ray_backend(queue, ExecOptions(), {"session": ray_session,
                                                     "cpus_per_run": CPUS_PER_RUN}):
        if pending_at_first_record is None:
            pending_at_first_record = len(queue.pending)
        store.write(record)
    # 2 CPUs / 2 per run: one run at a time, so the first record came back before the second
    # run was even submitted.
    assert pending_at_first_record == 1

    local, remote = records_by_key(tmp_path / "local"), records_by_key(tmp_path / "ray")
    assert set(local) == set(remote) == {c.key for c in exp.run_configs()}
    for key in local:
        assert remote[key]["status"] == "ok"
        assert remote[key]["environment"]["torch_threads"] == CPUS_PER_RUN
        assert comparable(remote[key]) == comparable(local[key])


@pytest.mark.ray
def test_cli_ray_backend_records_diverged_runs_as_failed(ray_session, tmp_path, capsys):
    config = tmp_path / "diverge.toml"
    config.write_text('strategies = ["finetune"]\nseeds = [0, 1]\ndevice = "cpu"\n'
                      '[train]\nepochs = 1\nlr = 1e12\noptimizer = "sgd"\n')
    out = tmp_path / "out"
    assert main(["run", "--config", str(config), "--backend", "ray", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    failed = [line for line in captured.err.splitlines() if line.startswith("run ")]
    assert len(failed) == 2 and "Traceback" not in captured.err
    assert all(re.search(r"failed: diverged: loss became (nan|-?inf) at step 1$", line)
               for line in failed)
    assert "2 runs: 0 done, 2 failed, 0 already finished" in captured.out
    assert {r["status"] for r in ResultsStore(out).records()} == {"failed"}


@pytest.mark.ray
def test_run_whose_worker_dies_once_is_retried(ray_session, tmp_path, kill_worker):
    kill_marker = kill_worker(times=1)
    outcome = run_experiment(tiny_experiment(seeds=[0]), tmp_path / "out", backend="ray",
                             quiet=True, build_report=False)
    assert outcome.ok == 1 and outcome.failed == 0
    assert sorted(p.name for p in kill_marker.iterdir()) == ["attempt-1", "attempt-2"]
    (record,) = ResultsStore(tmp_path / "out").records()
    assert record["status"] == "ok" and record["metrics"]["final_accuracy"] > 0


@pytest.mark.ray
def test_run_whose_worker_keeps_dying_fails_and_the_grid_goes_on(ray_session, tmp_path,
                                                                  kill_worker):
    kill_marker = kill_worker(times=2)
    exp = tiny_experiment()
    first, second = exp.run_configs()
    outcome = run_experiment(exp, tmp_path / "out", backend="ray", quiet=True,
                             build_report=False,
                             backend_options={"max_retries": 1, "cpus_per_run": CPUS_PER_RUN})
    assert outcome.ok == 1 and outcome.failed == 1
    assert len(list(kill_marker.iterdir())) == 3  # 2 attempts of the first run, 1 of the second
    records = records_by_key(tmp_path / "out")
    assert records[first.key]["status"] == "failed"
    assert records[first.key]["error"].startswith("worker died 2 times: ")
    assert records[second.key]["status"] == "ok"


@pytest.mark.ray
def test_cuda_on_a_cluster_without_gpu_is_a_usage_error(ray_session, tmp_path):
    if ray_session.gpus():
        pytest.skip("this Ray instance has a GPU")
    exp = tiny_experiment()
    exp.device = "cuda"
    with pytest.raises(UsageError, match="the Ray cluster has no GPU"):
        run_experiment(exp, tmp_path / "out", backend="ray", quiet=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
def test_more_cpus_per_run_than_any_node_has_is_a_usage_error(ray_session, tmp_path):
    with pytest.raises(UsageError, match="largest node of the Ray cluster has"):
        run_experiment(tiny_experiment(), tmp_path / "out", backend="ray", quiet=True,
                       backend_options={"cpus_per_run": 1000})
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
def test_each_source_is_trained_once_per_grid_not_once_per_worker(ray_session, tmp_path):
    """PNC, its oracle and weight fusion on two seeds share each seed's experts: on Ray (two
    workers, no shared disk) every expert is trained by one task and handed to every run that
    uses it, and the records equal the local backend's."""
    from benchmark.perf.grid_speed import trainings

    exp = Experiment(strategies=["pnc", "pnc-oracle", "weight-fusion"], seeds=[0, 1],
                     train={"epochs": 1}, device="cpu")
    run_experiment(exp, tmp_path / "ray", ExecOptions(), backend="ray",
                   backend_options={"cpus_per_run": 1}, quiet=True, build_report=False)
    counts = trainings(tmp_path / "ray")
    assert len(counts) == 2 * 4  # two seeds x steps 2..5
    assert set(counts.values()) == {1}
    threads = torch.get_num_threads()
    try:
        run_experiment(exp, tmp_path / "local", ExecOptions(threads=1), quiet=True,
                       build_report=False)
    finally:
        torch.set_num_threads(threads)
    local, remote = records_by_key(tmp_path / "local"), records_by_key(tmp_path / "ray")
    assert set(local) == set(remote) and len(local) == 6
    for key in local:
        assert comparable(remote[key]) == comparable(local[key])
