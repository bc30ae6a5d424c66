"""The results store: one JSON record per run under ``DIR/runs/<key>.json``.

Records are written atomically (a temp file in the same folder, fsync, then rename), so a reader
or an interrupted writer never leaves a partial record; stale temp files from a killed writer are
removed when the store is opened. A results folder may hold only what the suite writes; anything
else is refused before a run starts, so a mistyped ``--out`` never mixes results with other files.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmark.core.errors import RecordError, UsageError
from benchmark.core.metrics import METRIC_NAMES
from benchmark.run.claims import Owner

SCHEMA = "clonebench.run/1"
RUNS = "runs"
TMP_PREFIX = ".tmp-"
STALE_TMP_SECONDS = 3600.0
# Entries the suite writes in a results folder.
KNOWN_ENTRIES = {RUNS, "tables", "figures", "report.html", "experiment.json", "experts",
                 ".lock", "claims"}
REQUIRED = {
    "key": str, "status": str, "config": dict, "classes_per_step": list,
    "accuracy_matrix": list, "step_locality": list, "metrics": dict, "costs": dict,
    "environment": dict,
}



def validate_record(record, where: str) -> dict:
    """``record`` if it is a clonebench run record, else RecordError naming ``where``."""
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise RecordError(f"{where} is not a clonebench run record (no schema {SCHEMA!r}); "
                          "move it out of the results folder")
    for name, kind in REQUIRED.items():
        if not isinstance(record.get(name), kind):
            raise RecordError(f"{where} is a corrupt record: field {name!r} is missing or not a "
                              f"{kind.__name__}; delete it and re-run to recompute it")
    missing_cfg = [k for k in ("stream", "strategy", "seed") if k not in record["config"]]
    if missing_cfg:
        raise RecordError(f"{where} is a corrupt record: config has no {missing_cfg[0]!r}; "
                          "delete it and re-run to recompute it")
    if record["status"] not in ("ok", "failed"):
        raise RecordError(f"{where} is a corrupt record: status {record['status']!r}")
    if record["status"] == "failed" and not record.get("error"):
        raise RecordError(f"{where} is a corrupt record: failed without an error")
    if record["status"] == "ok":
        missing = [m for m in METRIC_NAMES if m not in record["metrics"]]
        if missing:
            raise RecordError(f"{where} is a corrupt record: metric {missing[0]!r} missing")
    return record


def read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RecordError(f"{path} is corrupt or unreadable ({err.__class__.__name__}); delete "
                          "it and re-run to recompute it") from None
    validate_record(record, str(path))
    if record["key"] != path.stem:
        raise RecordError(f"{path} holds the record of run {record['key']}, not {path.stem}; "
                          "rename or delete it")
    return record


def atomic_write(path: Path, data) -> None:
    """Writes ``data`` (text as UTF-8, or bytes) to ``path`` through a temp file, fsync and a
    rename, so readers see the old or the new content, never a mix; readable by all (0644)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}@{socket.gethostname()}~",
                               dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are readable like any other file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _temp_is_stale(path: Path) -> bool:
    """True once the writer of a temp file (``<pid>@<host>`` in its name) is gone, or the file is
    older than STALE_TMP_SECONDS; another driver's write in progress is left alone."""
    pid, _, host = path.name[len(TMP_PREFIX):].split("~", 1)[0].partition("@")
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if not pid.isdigit() or age > STALE_TMP_SECONDS:
        return True
    return Owner(int(pid), host, None).is_dead()


class ResultsStore:
    """Reads and writes the run records of one results folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.runs = self.root / RUNS

    def check(self, create: bool = False) -> ResultsStore:
        """Refuses a folder holding anything the suite did not write; removes stale temp files.

        With ``create`` a missing folder is made; otherwise it must exist.
        """
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"{self.root} is a file, not a results folder; choose another --out")
        if not self.root.exists():
            if not create:
                raise UsageError(f"results folder {self.root} does not exist")
            return self
        foreign = sorted(p.name for p in self.root.iterdir() if p.name not in KNOWN_ENTRIES)
        if foreign:
            raise UsageError(
                f"{self.root} holds files that are not clonebench results ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); choose an empty or a results folder")
        if self.runs.exists():
            for path in self.runs.iterdir():
                if path.name.startswith(TMP_PREFIX):
                    if _temp_is_stale(path):
                        path.unlink(missing_ok=True)
                elif path.suffix != ".json" or not path.is_file():
                    raise RecordError(f"{path} is not a clonebench record; move it out of "
                                      f"{self.runs}")
        return self

    def paths(self) -> list[Path]:
        if not self.runs.exists():
            return []
        return sorted(p for p in self.runs.glob("*.json") if not p.name.startswith(TMP_PREFIX))

    def records(self) -> Iterator[dict]:
        for path in self.paths():
            yield read_record(path)

    def load_all(self) -> dict[str, dict]:
        return {r["key"]: r for r in self.records()}

    def finished_keys(self) -> set:
        """Keys of the runs recorded with status ``ok`` (failed runs are not finished)."""
        return {key for key, record in self.load_all().items() if record["status"] == "ok"}

    def write(self, record: dict) -> Path:
        validate_record(record, f"record {record.get('key')}")
        path = self.runs / f"{record['key']}.json"
        atomic_write(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
        return path
