"""Claims: which driver is computing which run of a results folder.

Before a driver starts a run it *claims* it by creating ``DIR/claims/<key>.json`` with
``O_CREAT | O_EXCL`` (atomic on local and NFS file systems: of two drivers, exactly one creates
the file). The claim names its owner: process id, host and the process's start time (from
``/proc``, so a recycled pid is not mistaken for the owner). The owner removes its claim once the
run's record is written, or when it stops (Ctrl-C, an error). A claim left behind by a driver
killed with ``kill -9`` is *stale* and is taken over by the next driver that needs the run:

- a claim of this host is stale as soon as its owner process is gone (or is a zombie, or its pid
  now belongs to a process started at another time);
- any claim is stale when its file has not been touched for ``STALE_AFTER_SECONDS``: owners
  refresh their claims every ``HEARTBEAT_SECONDS`` from a background thread. This is how a
  claim of a driver on another host (sharing the folder over a network file system) that died
  is eventually taken over;
- an empty claim (its owner was killed between creating and writing it) is stale after
  ``EMPTY_GRACE_SECONDS``.

Claims only prevent duplicated work; the records' atomic writes alone keep every record whole.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

CLAIMS = "claims"
HEARTBEAT_SECONDS = 60.0
STALE_AFTER_SECONDS = 600.0
EMPTY_GRACE_SECONDS = 10.0


def process_start(pid: int) -> Optional[str]:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _process_state(pid: int) -> Optional[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class Owner:
    """A driver process: pid, host and start time (None where /proc is unavailable)."""

    pid: int
    host: str
    started: Optional[str]

    @classmethod
    def this_process(cls) -> Owner:
        return cls(os.getpid(), socket.gethostname(), process_start(os.getpid()))

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def is_local(self) -> bool:
        return self.host == socket.gethostname()

    def is_dead(self) -> bool:
        """True if this (local) process has ended; False if it runs or cannot be checked."""
        if not self.is_local():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        if _process_state(self.pid) == "Z":
            return True
        now = process_start(self.pid)
        return self.started is not None and now is not None and now != self.started


class Claims:
    """The claims of one results folder, as held by one owner (default: this process)."""

    def __init__(self, root: Path, owner: Optional[Owner] = None,
                 stale_after: float = STALE_AFTER_SECONDS):
        self.dir = Path(root) / CLAIMS
        self.owner = owner or Owner.this_process()
        self.stale_after = stale_after
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: Optional[threading.Thread] = None

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def acquire(self, key: str) -> bool:
        """Claims run ``key``; False if another live owner holds it. Takes over stale claims."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._break_if_stale(key):
                    continue
                return False
            with os.fdopen(fd, "w") as handle:
                body = dict(asdict(self.owner), claimed=_dt.datetime.now(
                    _dt.timezone.utc).isoformat(timespec="seconds"))
                handle.write(json.dumps(body) + "\n")
            with self._lock:
                self.held.add(key)
            return True
        return False

    def holder(self, key: str) -> Optional[Owner]:
        """The owner named in run ``key``'s claim, None if unclaimed or not (yet) readable."""
        try:
            data = json.loads(self.path(key).read_text())
            return Owner(int(data["pid"]), str(data["host"]), data.get("started"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_stale(self, key: str) -> bool:
        """True if run ``key``'s claim exists and its owner is gone (see the module docstring)."""
        try:
            age = time.time() - self.path(key).stat().st_mtime
        except FileNotFoundError:
            return False
        if age > self.stale_after:
            return True
        owner = self.holder(key)
        if owner is None:
            return age > EMPTY_GRACE_SECONDS
        return owner != self.owner and owner.is_dead()

    def _break_if_stale(self, key: str) -> bool:
        """Removes run ``key``'s claim if stale; True if the claim is gone (so retry)."""
        path = self.path(key)
        try:
            inode = path.stat().st_ino
        except FileNotFoundError:
            return True
        if not self.is_stale(key):
            return False
        # Move the stale claim aside first: if another driver replaced it meanwhile with a fresh
        # claim (another inode), put that one back instead of deleting it.
        aside = self.dir / f".stale-{self.owner.pid}-{key}"
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return True
        if aside.stat().st_ino != inode:
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def release(self, key: str) -> None:
        """Removes run ``key``'s claim if this owner holds it."""
        with self._lock:
            if key not in self.held:
                return
            self.held.discard(key)
        self.path(key).unlink(missing_ok=True)

    def refresh(self) -> None:
        """Touches every claim held, so that other drivers see its owner is alive."""
        with self._lock:
            keys = list(self.held)
        for key in keys:
            try:
                os.utime(self.path(key))
            except FileNotFoundError:
                pass

    def start_heartbeat(self, interval: float = HEARTBEAT_SECONDS) -> None:
        """Refreshes the held claims every ``interval`` seconds until ``close``."""
        def beat():
            while not self._stop.wait(interval):
                self.refresh()

        self._heartbeat = threading.Thread(target=beat, name="clonebench-claims", daemon=True)
        self._heartbeat.start()

    def close(self) -> None:
        """Releases every claim held and stops the heartbeat."""
        self._stop.set()
        with self._lock:
            keys = list(self.held)
        for key in keys:
            self.release(key)
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)

    def holders(self, keys) -> dict[str, Owner]:
        """The owners of those of ``keys`` that are claimed by someone readable."""
        found = {}
        for key in keys:
            owner = self.holder(key)
            if owner is not None:
                found[key] = owner
        return found
