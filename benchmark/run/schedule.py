"""The one loop that hands a grid's runs to workers (the local backend's worker processes and
the Ray backend's tasks both use it), and the networks it trains once per grid.

``schedule(queue, pool, exec_options)`` keeps the pool's slots busy with tasks and yields each
record as its task ends (the driver writes it). A task is either

- a *group*: a run and its companions (``RunQueue.take_group``), one ``execute_runs``; or
- a *preparation*: the networks the runs of one *source group* train for their protocol
  (``source_group``: same stream, options, seed, backbone, scenario and training settings),
  ``protocol.prepare_sources`` for every source those runs use. Its groups wait until it ends,
  then receive the networks (``ExecOptions.preloaded``), so every expert and pre-trained
  target is trained once per grid, not once per worker. The first group handed a network is
  credited with its training seconds (it reports them as its run would have), every later one
  reports it cached. A preparation that fails leaves its runs to train their own.

The pool (``WorkerPool``) says how many tasks may run at once, submits, waits and collects; a
task it loses (a worker died) raises ``RunLost`` from ``outcome``, and the group's runs are
recorded as failed with the reason.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any, Optional, Protocol

from benchmark.run.plan import ExecOptions, RunConfig
from benchmark.run.queue import RunGroup, RunQueue, failed_record

TRAINED_SOURCES = ("expert", "pretrained", "zoo")


class RunLost(Exception):
    """A task ended without a result (its worker died); ``reason`` is one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class WorkerPool(Protocol):
    def slots(self, cfg: RunConfig) -> int:
        """Tasks that may run at once now (at least 1) for runs like ``cfg``."""

    def submit_group(self, group: RunGroup, options: ExecOptions,
                     networks: Optional[dict], credit: dict) -> Any:
        """Starts ``execute_runs`` of the group; ``networks`` as a preparation returned them,
        ``credit`` the training seconds this group reports as its own."""

    def submit_prepare(self, cfg: RunConfig, sources: list, options: ExecOptions) -> Any:
        """Starts ``prepare_sources`` for ``cfg``'s source group and ``sources``."""

    def wait(self, handles: list, timeout: float) -> list:
        """The handles of tasks that ended (possibly none after ``timeout`` seconds)."""

    def outcome(self, handle) -> Any:
        """A finished task's result; RunLost when its worker died."""

    def cancel(self, handle) -> None:
        """Stops a task (when the consumer stops early)."""


def needs_sources(cfg: RunConfig) -> bool:
    """Whether the run trains networks for its protocol (a step source, a pre-trained
    target)."""
    return (cfg.source is not None and cfg.source["provider"] in TRAINED_SOURCES) or (
        cfg.scenario is not None and cfg.scenario["name"] == "cloning")


def source_group(cfg: RunConfig) -> str:
    """What names the networks a run trains for its protocol, besides its source kind."""
    return json.dumps([cfg.stream, cfg.stream_options, cfg.seed, cfg.backbone, cfg.train,
                       cfg.device, cfg.evaluation, cfg.data_version, cfg.scenario],
                      sort_keys=True)


def _sources_of(group_key: str, configs: list[RunConfig]) -> list:
    """The distinct sources the runs of a source group use (None: none)."""
    found = {json.dumps(c.source, sort_keys=True): c.source for c in configs
             if source_group(c) == group_key}
    return list(found.values())


def schedule(queue: RunQueue, pool: WorkerPool, options: ExecOptions,
             poll_seconds: float = 1.0) -> Iterator[dict]:
    """Every record of the queue's runs, as its task ends (module docstring)."""
    in_flight: dict[Any, tuple[str, Any]] = {}
    prepared: dict[str, tuple[Optional[dict], dict]] = {}  # networks, their seconds
    credited: set[str] = set()
    waiting: list[RunGroup] = []

    def submit(group: RunGroup) -> None:
        networks, seconds = prepared.get(source_group(group.primary), (None, {}))
        uses = group.primary.source
        credit = {k: s for k, (s, use) in seconds.items()
                  if k not in credited and s is not None and (use is None or use == uses)}
        credited.update(credit)
        in_flight[pool.submit_group(group, options, networks, credit)] = ("group", group)

    try:
        while True:
            while True:
                ready = next((g for g in waiting if source_group(g.primary) in prepared), None)
                if ready is not None:
                    if len(in_flight) >= pool.slots(ready.primary):
                        break
                    waiting.remove(ready)
                    submit(ready)
                    continue
                if queue.exhausted or len(in_flight) >= pool.slots(queue.pending[0]):
                    break
                group = queue.take_group()
                if group is None:
                    break
                key = source_group(group.primary)
                if not needs_sources(group.primary) or key in prepared:
                    submit(group)
                    continue
                if not any(g for g in waiting if source_group(g.primary) == key):
                    sources = _sources_of(key, [group.primary, *queue.pending])
                    handle = pool.submit_prepare(group.primary, sources, options)
                    in_flight[handle] = ("prepare", key)
                waiting.append(group)
            if not in_flight:
                if queue.exhausted and not waiting:
                    return
                queue.wait()
                continue
            for handle in pool.wait(list(in_flight), poll_seconds):
                kind, what = in_flight.pop(handle)
                if kind == "prepare":
                    try:
                        prepared[what] = pool.outcome(handle)
                    except Exception:  # its runs train their own networks
                        prepared[what] = (None, {})
                    continue
                try:
                    records = pool.outcome(handle)
                except RunLost as lost:
                    records = [failed_record(c, lost.reason) for c in what.configs]
                yield from records
    finally:
        for handle in in_flight:
            try:
                pool.cancel(handle)
            except Exception:  # the workers may already be gone; nothing left to stop
                pass


def split_prepared(found: dict) -> tuple[dict, dict]:
    """``prepare_sources``'s {key: (state, seconds, use)} as (states by key, {key: (seconds,
    use)})."""
    return ({k: state for k, (state, _, _) in found.items()},
            {k: (seconds, use) for k, (_, seconds, use) in found.items()})


def with_networks(options: ExecOptions, networks: Optional[dict], credit: dict) -> ExecOptions:
    """``options`` carrying the networks a run is handed (states, possibly None to be read from
    the expert cache on disk) and the seconds it reports as its own training."""
    preloaded = {k: (state, credit.get(k)) for k, state in (networks or {}).items()}
    preloaded.update({k: (None, s) for k, s in credit.items() if k not in preloaded})
    return dataclasses.replace(options, preloaded=preloaded or None)
