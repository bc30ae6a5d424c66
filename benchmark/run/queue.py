"""The runs a driver still has to do, handed out one at a time, each claimed first, and the
record of a run that ended without a result of its own.

Several drivers may work on one results folder at once: the queue claims each run before it is
started (``benchmark.run.claims``), so no run is computed twice at the same time, a run that
another driver records meanwhile is not recomputed, and a driver that runs out of unclaimed runs
waits for the runs the others hold (taking over those whose driver died).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Optional

from benchmark.run.claims import Claims
from benchmark.run.plan import RunConfig
from benchmark.run.runner import empty_record, environment
from benchmark.run.store import ResultsStore
from strategies import get_strategy


@dataclass
class RunGroup:
    """A run and its companions: runs evaluated on its training (``StrategySpec.trained_as``;
    ``benchmark.run.runner.execute_runs``)."""

    primary: RunConfig
    companions: list[RunConfig] = field(default_factory=list)

    @property
    def configs(self) -> list[RunConfig]:
        return [self.primary, *self.companions]


def trained_as(cfg: RunConfig) -> RunConfig:
    """The run whose training ``cfg``'s is by definition (itself for most strategies)."""
    other = get_strategy(cfg.strategy).trained_as
    return cfg if other is None else dataclasses.replace(cfg, strategy=other)

POLL_SECONDS = 1.0


class RunQueue:
    """The runs a driver still has to do, handed out one at a time, each claimed first.

    ``take()`` returns the next run that no other driver holds, claimed for this one, or None
    when every remaining run is held by another driver right now. A run whose record file
    changed since the grid was planned was recorded by another driver: it is dropped and
    counted in ``elsewhere``. Without a store and claims it simply hands out the runs in order.
    """

    def __init__(self, configs: Iterable[RunConfig], store: Optional[ResultsStore] = None,
                 claims: Optional[Claims] = None, poll_seconds: float = POLL_SECONDS,
                 on_wait: Optional[Callable[[str], None]] = None):
        self.pending: list[RunConfig] = list(configs)
        self.store = store
        self.claims = claims
        self.poll_seconds = poll_seconds
        self.on_wait = on_wait
        self.elsewhere = 0
        self._stamps = {c.key: self._stamp(c.key) for c in self.pending}
        self._told_wait = False

    def _stamp(self, key: str):
        """What identifies the current content of run ``key``'s record files (the record and
        a failure kept beside it)."""
        if self.store is None:
            return None
        stamps = []
        for path in (self.store.record_path(key), self.store.failure_path(key)):
            try:
                st = path.stat()
            except FileNotFoundError:
                stamps.append(None)
                continue
            stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def _recorded_elsewhere(self, cfg: RunConfig) -> bool:
        return self._stamp(cfg.key) != self._stamps[cfg.key]

    @property
    def exhausted(self) -> bool:
        """True once every run was handed out or recorded by another driver."""
        return not self.pending

    def take(self) -> Optional[RunConfig]:
        """The next run, now claimed by this driver; None if the others hold all that remain."""
        for cfg in list(self.pending):
            if self._recorded_elsewhere(cfg):
                self._drop_elsewhere(cfg)
                continue
            if self.claims is None:
                self.pending.remove(cfg)
                return cfg
            if not self.claims.acquire(cfg.key):
                continue
            if self._recorded_elsewhere(cfg):  # finished by another driver just before
                self.claims.release(cfg.key)
                self._drop_elsewhere(cfg)
                continue
            self.pending.remove(cfg)
            return cfg
        return None

    def take_group(self) -> Optional[RunGroup]:
        """The next run with its companions still to do, all claimed: when the next run is a
        companion (``pnc-oracle``) whose trained run (``pnc``) is still to do, that run leads
        the group. None if the others hold all that remain."""
        cfg = self.take()
        if cfg is None:
            return None
        lead = trained_as(cfg)
        if lead is not cfg:
            primary = self._take_where(lambda c: c == lead)
            if primary is None:
                return RunGroup(cfg)
            group = RunGroup(primary, [cfg])
        else:
            group = RunGroup(cfg)
        while True:
            more = self._take_where(lambda c: c.strategy != group.primary.strategy
                                    and trained_as(c) == group.primary)
            if more is None:
                return group
            group.companions.append(more)

    def _take_where(self, wanted) -> Optional[RunConfig]:
        """The first pending run for which ``wanted(run)`` holds, claimed, or None."""
        for cfg in list(self.pending):
            if wanted(cfg) and not self._recorded_elsewhere(cfg) and (
                    self.claims is None or self.claims.acquire(cfg.key)):
                self.pending.remove(cfg)
                return cfg
        return None

    def _drop_elsewhere(self, cfg: RunConfig) -> None:
        self.pending.remove(cfg)
        self.elsewhere += 1

    def wait(self) -> None:
        """Sleeps while other drivers hold the remaining runs (says so once)."""
        if not self._told_wait and self.on_wait is not None and self.claims is not None:
            holders = self.claims.holders(c.key for c in self.pending)
            names = sorted({o.describe() for o in holders.values()})
            if names:
                self.on_wait(f"waiting for {len(self.pending)} run(s) claimed by another driver "
                             f"({', '.join(names)}); they are taken over if it dies")
                self._told_wait = True
        time.sleep(self.poll_seconds)

    def finish(self, key: str) -> None:
        """Releases run ``key`` once its record is written."""
        if self.claims is not None:
            self.claims.release(key)

    def close(self) -> None:
        """Releases the claims of runs handed out but not finished (interrupted)."""
        if self.claims is not None:
            self.claims.close()

    def __iter__(self) -> Iterator[RunConfig]:
        """Blocking iteration, for backends that run one run at a time."""
        while not self.exhausted:
            cfg = self.take()
            if cfg is not None:
                yield cfg
            elif not self.exhausted:
                self.wait()


def failed_record(cfg: RunConfig, error: str) -> dict:
    """The record of a run that ended without a result of its own (e.g. its worker died).

    Its environment is the driver's, marked ``recorded_by: driver``.
    """
    env = environment("cpu")
    env.update(device=cfg.device, recorded_by="driver")
    return empty_record(cfg, "failed", error, env)
