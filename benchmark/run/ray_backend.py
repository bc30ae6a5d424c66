"""The Ray backend: each run of the grid is a Ray task; the driver alone writes the records.

A task executes ``benchmark.run.runner.execute_runs`` on a worker (a run and its companions,
e.g. PNC and pnc-oracle) and sends the records back; workers need no shared disk. The networks
runs train for their protocol (experts, pre-trained sources and targets) are trained once per
grid, by a preparation task per seed and setting, and handed to every run that needs them
through Ray's object store (``benchmark.run.schedule``). The driver submits as many tasks as
the cluster can run at once (re-reading the cluster's size after each finished task, so nodes
that join are used), claims each run before submitting it, and writes each record as soon as
its task ends (``ray.wait``).

Resources: with ``--device cuda`` (or ``auto`` on a cluster that has GPUs) a run asks for one
GPU and one CPU; on CPU a run asks for ``cpus_per_run`` CPUs (default: the driver's torch thread
count, capped at the largest node's CPUs) and the worker uses that many torch threads, so on one
machine its records are bitwise identical to the local backend's.

Faults: a task whose worker process or node dies is retried by Ray up to ``max_retries`` times
(default ``MAX_RETRIES``); after that the run is recorded as failed ("worker died N times: ...")
and the grid goes on. Exceptions inside a run are not retried: ``execute_run`` records them.

Without an address a local Ray instance is started (``LOCAL_NUM_CPUS`` CPUs, no dashboard,
worker output not forwarded, usage statistics off) that talks over loopback only: its node
address is 127.0.0.1 (Ray's ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, set for its processes, and
``_node_ip_address``), so nothing of it listens on the machine's network address; it is shut
down at the end; ``--address auto``
joins the cluster running on this machine (or ``RAY_ADDRESS``). A Ray already initialised in this
process is reused as it is.

Tests inject faults by replacing ``run_on_worker`` (the body of a task) in this module; nothing
here knows about them.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any, Optional

from benchmark.core.errors import UsageError, first_line
from benchmark.run.plan import DEVICES, ExecOptions, RunConfig, resolve_device
from benchmark.run.protocol import prepare_sources
from benchmark.run.queue import POLL_SECONDS, RunGroup, RunQueue, failed_record
from benchmark.run.runner import execute_runs
from benchmark.run.schedule import RunLost, schedule, split_prepared, with_networks

MAX_RETRIES = 2
LOCAL_NUM_CPUS = 2
LOCAL_OBJECT_STORE_BYTES = 100 * 2 ** 20
CONNECT_TIMEOUT_SECONDS = 5.0
DIED = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError")
LOOPBACK = "127.0.0.1"
# Ray reads this when ``ray`` is imported (ray._private.ray_constants.ENABLE_RAY_CLUSTER): "0"
# makes a node take the loopback address instead of the machine's network address.
CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def require_ray():
    """The ``ray`` module, or UsageError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray, which is not installed; install it with "
                         "`pip install 'clonebench[ray]'` or use --backend local") from None
    return ray


def _check_reachable(address: str) -> None:
    """UsageError at once if ``host:port`` refuses connections (Ray itself retries for minutes)."""
    host_port = address.split("://", 1)[-1]
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit():
        if address == "auto":
            return
        raise UsageError(f"bad --address {address!r}: expected HOST:PORT (e.g. 10.0.0.1:6379), "
                         "ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_SECONDS).close()
    except OSError as err:
        raise UsageError(f"cannot reach the Ray cluster at {address} ({err.strerror or err}); "
                         "start it with `ray start --head` there, or fix --address") from None


class RaySession:
    """A connection to Ray for one grid: to ``address``, or a local instance started here."""

    def __init__(self, address: Optional[str] = None):
        self.address = address
        self.started = False
        self.ray = None
        self._restore: list = []

    def _loopback_only(self) -> None:
        """Makes the local instance about to start (and its worker processes) use 127.0.0.1;
        undone in ``__exit__``."""
        from ray._private import ray_constants

        previous_env = os.environ.get(CLUSTER_SWITCH)
        previous_flag = ray_constants.ENABLE_RAY_CLUSTER
        os.environ[CLUSTER_SWITCH] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False  # already read if ray was imported before

        def restore():
            ray_constants.ENABLE_RAY_CLUSTER = previous_flag
            if previous_env is None:
                os.environ.pop(CLUSTER_SWITCH, None)
            else:
                os.environ[CLUSTER_SWITCH] = previous_env

        self._restore.append(restore)

    def __enter__(self) -> RaySession:
        ray = self.ray = require_ray()
        if ray.is_initialized():
            return self
        quiet = dict(include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
        if self.address is None:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            self._loopback_only()
            try:
                ray.init(address="local", num_cpus=LOCAL_NUM_CPUS, _node_ip_address=LOOPBACK,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
            except BaseException:
                self.__exit__()
                raise
        else:
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, **quiet)
            except (ConnectionError, ValueError, RuntimeError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise UsageError(
                    f"cannot connect to the Ray cluster at {self.address} ({first}); check "
                    "--address, and for a cluster with token authentication (Ray's default) "
                    "set RAY_AUTH_MODE=token with its token in RAY_AUTH_TOKEN or "
                    "~/.ray/auth_token") from None
        self.started = True
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False
        while self._restore:
            self._restore.pop()()

    def gpus(self) -> int:
        return int(self.ray.cluster_resources().get("GPU", 0))

    def resolve_device(self, requested: str) -> str:
        """``auto``: cuda if the cluster has a GPU, else cpu; ``cuda`` needs a GPU in it."""
        if requested not in DEVICES:
            return resolve_device(requested)
        if requested == "cpu":
            return "cpu"
        if self.gpus() > 0:
            return "cuda"
        if requested == "cuda":
            raise UsageError("--device cuda was asked for but the Ray cluster has no GPU; use "
                             "--device cpu or add GPU nodes")
        return "cpu"

    def largest_node_cpus(self) -> int:
        cpus = [n.get("Resources", {}).get("CPU", 0) for n in self.ray.nodes() if n.get("Alive")]
        return max(1, int(max(cpus, default=1)))

    def cpus_per_run(self, asked: Optional[int] = None, threads: int = 1) -> int:
        """CPUs (and torch threads) per CPU run: ``asked``, else the run's thread count
        ``threads``, at most the largest node's CPUs."""
        largest = self.largest_node_cpus()
        if asked is None:
            return min(threads, largest)
        if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
            raise UsageError(f"bad cpus per run {asked!r}: expected an integer >= 1")
        if asked > largest:
            raise UsageError(f"{asked} CPUs per run asked for, but the largest node of the Ray "
                             f"cluster has {largest}; ask for at most {largest}")
        return asked

    def slots(self, device: str, cpus_per_run: int) -> int:
        """How many runs the cluster can execute at once now (at least 1)."""
        total = self.ray.cluster_resources()
        if device.startswith("cuda"):
            return max(1, int(total.get("GPU", 0)))
        return max(1, int(total.get("CPU", 0)) // cpus_per_run)


def run_on_worker(group: RunGroup, exec_options: ExecOptions, networks: Optional[dict],
                  credit: dict) -> list[dict]:
    """The body of a run task: a run and its companions on this worker, with the networks
    prepared for them (``schedule.with_networks``); returns their records."""
    try:
        return execute_runs(group.primary, with_networks(exec_options, networks, credit),
                            group.companions)
    except UsageError as err:  # e.g. data missing on this node: the run fails, the grid goes on
        return [failed_record(c, f"on worker {socket.gethostname()}: {err}")
                for c in group.configs]


def prepare_on_worker(cfg: RunConfig, sources: list, exec_options: ExecOptions):
    """The body of a preparation task: (the networks by key, {key: (seconds, use)})."""
    return split_prepared(prepare_sources(cfg, sources, exec_options))


def failure_reason(ray, err: BaseException, attempts: int) -> str:
    """One line saying why a task ended without a record."""
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None) or err
        hint = ("; is clonebench installed on every node?"
                if isinstance(cause, ModuleNotFoundError) else "")
        return f"{type(cause).__name__}: {first_line(cause)}{hint}"
    if type(err).__name__ == "OutOfMemoryError":
        return f"killed by Ray's memory monitor (node out of memory): {first_line(err)}"
    if type(err).__name__ in DIED:
        return f"worker died {attempts} times: {first_line(err)}"
    return f"{type(err).__name__}: {first_line(err)}"


class RayPool:
    """Ray tasks on a cluster (``schedule``'s ``WorkerPool``): a run task asks for one GPU and
    one CPU on a GPU device, else ``cpus`` CPUs, and is retried ``retries`` times when its
    worker dies."""

    def __init__(self, ray, session: RaySession, cpus: int, retries: int):
        self.ray, self.session, self.cpus, self.retries = ray, session, cpus, retries
        self.run_task = ray.remote(run_on_worker)
        self.prepare_task = ray.remote(prepare_on_worker)
        self.states: dict = {}  # a preparation's handle -> the reference of its networks

    def _resources(self, cfg: RunConfig) -> dict:
        if cfg.device.startswith("cuda"):
            return {"num_gpus": 1, "num_cpus": 1}
        return {"num_cpus": self.cpus}

    def _options(self, cfg: RunConfig, options: ExecOptions) -> ExecOptions:
        gpu = cfg.device.startswith("cuda")
        return dataclasses.replace(options, expert_dir=None, show_progress=False,
                                   threads=options.threads if gpu else self.cpus)

    def slots(self, cfg: RunConfig) -> int:
        return self.session.slots(cfg.device, self.cpus)

    def submit_group(self, group, options, networks, credit):
        cfg = group.primary
        return self.run_task.options(max_retries=self.retries, retry_exceptions=False,
                                     **self._resources(cfg)).remote(
            group, self._options(cfg, options), networks, credit)

    def submit_prepare(self, cfg, sources, options):
        states, seconds = self.prepare_task.options(
            max_retries=self.retries, retry_exceptions=False, num_returns=2,
            **self._resources(cfg)).remote(cfg, sources, self._options(cfg, options))
        self.states[seconds] = states
        return seconds

    def wait(self, handles, timeout):
        done, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        return done

    def outcome(self, handle):
        try:
            result = self.ray.get(handle)
        except self.ray.exceptions.RayError as err:
            raise RunLost(failure_reason(self.ray, err, self.retries + 1)) from None
        if handle in self.states:  # a preparation: its networks stay in the object store
            return self.states.pop(handle), result
        return result

    def cancel(self, handle):
        self.ray.cancel(handle, force=True)


def ray_backend(configs: Iterable[RunConfig], exec_options: ExecOptions,
                options: dict[str, Any]) -> Iterable[dict]:
    """Runs ``configs`` as Ray tasks, yielding each record as its task ends.

    ``options``: ``session`` (a RaySession already entered; else one is opened on
    ``address``), ``max_retries``, ``cpus_per_run``, ``poll_seconds``. CPU runs use
    ``cpus_per_run`` torch threads (default: ``exec_options.threads``). Tasks still running when
    the consumer stops are cancelled.
    """
    ray = require_ray()
    queue = configs if isinstance(configs, RunQueue) else RunQueue(configs)
    retries = options.get("max_retries")
    retries = MAX_RETRIES if retries is None else retries
    with ExitStack() as stack:
        session = options.get("session") or stack.enter_context(
            RaySession(options.get("address")))
        cpus = session.cpus_per_run(options.get("cpus_per_run"), exec_options.threads)
        yield from schedule(queue, RayPool(ray, session, cpus, retries), exec_options,
                            options.get("poll_seconds") or POLL_SECONDS)
