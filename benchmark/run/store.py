"""The results store: one JSON record per run under ``DIR/runs/<key>.json``.

Records are written atomically (a temp file in the same folder, fsync, then rename), so a reader
or an interrupted writer never leaves a partial record; stale temp files from a killed writer are
removed when the store is opened. A results folder may hold only what the suite writes and is
recognised by its marker (``benchmark.run.folder``); anything else is refused before a run
starts, so a mistyped ``--out`` never mixes results with other files.

A good result is never replaced by a failure: a failed run whose ``ok`` record exists (a
``--force`` rerun that failed) is written beside it as ``runs/<key>.failed.json``; a later
success replaces both.

One pass: a record file is parsed at most once per process while it is unchanged (a memo keyed
by its path, inode, size and modification time; a record this process writes enters the memo
as written), so the grid, the description, the report and the console table of one
``clonebench run`` share what was read. Records returned are shared: read them, never modify
them.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from benchmark.core.errors import RecordError, UsageError
from benchmark.core.metrics import METRIC_NAMES
from benchmark.run.claims import Owner
from benchmark.run.folder import (
    MARKER,
    TMP_PREFIX,
    atomic_write,
    check_report_files,
    own_report_files,
    read_marker,
    write_marker,
)

SCHEMA = "clonebench.run/1"
RUNS = "runs"
FAILED_SUFFIX = ".failed.json"
STALE_TMP_SECONDS = 3600.0
# Entries the suite writes in a results folder.
KNOWN_ENTRIES = {MARKER, RUNS, "tables", "figures", "report.html", "experiment.json", "experts",
                 ".lock", "claims", "models", "checkpoints", "logs"}
__all__ = ["SCHEMA", "TMP_PREFIX", "FAILED_SUFFIX", "KNOWN_ENTRIES", "ResultsStore",
           "atomic_write", "read_record", "validate_record"]
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


def key_of(path: Path) -> str:
    """The run key a record file is named after (``<key>.json`` or ``<key>.failed.json``)."""
    name = path.name
    return name[:-len(FAILED_SUFFIX)] if name.endswith(FAILED_SUFFIX) else path.stem


_PARSED: dict[str, tuple[tuple, dict]] = {}


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def read_record(path: Path) -> dict:
    """The record in ``path`` (shared: do not modify it); RecordError if it is corrupt,
    foreign or misnamed. A ``<key>.failed.json`` file must hold a failed record."""
    try:
        stamp = _stamp(path)
    except OSError:
        stamp = None
    known = _PARSED.get(str(path))
    if stamp is not None and known is not None and known[0] == stamp:
        return known[1]
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RecordError(f"{path} is corrupt or unreadable ({err.__class__.__name__}); delete "
                          "it and re-run to recompute it") from None
    validate_record(record, str(path))
    key = key_of(path)
    if record["key"] != key:
        raise RecordError(f"{path} holds the record of run {record['key']}, not {key}; "
                          "rename or delete it")
    if path.name.endswith(FAILED_SUFFIX) and record["status"] != "failed":
        raise RecordError(f"{path} holds a record with status {record['status']!r}; only "
                          "failures are kept beside a record; delete it")
    if stamp is not None:
        _PARSED[str(path)] = (stamp, record)
    return record


def _remember(path: Path, text: str) -> None:
    """Puts the record just written as ``text`` at ``path`` in the memo (parsed back, so the
    memo holds exactly what a reader of the file would)."""
    try:
        _PARSED[str(path)] = (_stamp(path), json.loads(text))
    except OSError:
        _PARSED.pop(str(path), None)


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


def _remove_stale_temps(folder: Path) -> None:
    """Deletes the temp files in ``folder`` whose writer is gone (``_temp_is_stale``)."""
    for path in folder.glob(f"{TMP_PREFIX}*"):
        if _temp_is_stale(path):
            path.unlink(missing_ok=True)


class ResultsStore:
    """Reads and writes the run records of one results folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.runs = self.root / RUNS

    def check(self, create: bool = False) -> ResultsStore:
        """Refuses a folder that is not a results folder, or holds anything the suite did not
        write; removes stale temp files. Writes nothing else.

        With ``create`` a missing or empty folder is accepted (``mark`` makes it); otherwise
        it must exist. A non-empty folder needs the marker, or a ``runs/`` folder holding only
        valid records (a results folder of a version without markers).
        """
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"{self.root} is a file, not a results folder; choose another --out")
        if not self.root.exists():
            if not create:
                raise UsageError(f"results folder {self.root} does not exist")
            return self
        _remove_stale_temps(self.root)  # the marker's writes; another driver's are left alone
        entries = sorted(p.name for p in self.root.iterdir()
                         if not p.name.startswith(TMP_PREFIX))  # another driver's, in progress
        foreign = [name for name in entries if name not in KNOWN_ENTRIES]
        if foreign:
            raise UsageError(
                f"{self.root} holds files that are not clonebench results ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); choose an empty or a results folder")
        marker = read_marker(self.root)
        if marker is None and entries and not self.runs.is_dir():
            raise UsageError(f"{self.root} is not a clonebench results folder (no {MARKER} "
                             "marker and no runs/ folder of records); choose an empty folder or "
                             "a results folder")
        if self.runs.exists():
            _remove_stale_temps(self.runs)
            for path in self.runs.iterdir():
                if path.name.startswith(TMP_PREFIX):
                    continue
                if path.suffix != ".json" or not path.is_file():
                    raise RecordError(f"{path} is not a clonebench record; move it out of "
                                      f"{self.runs}")
            if marker is None:
                list(self.records())  # a folder recognised by its records: all must be valid
        check_report_files(self.root, marker)
        return self

    def mark(self) -> ResultsStore:
        """Creates the folder if needed and gives it the marker (once the input is valid)."""
        self.root.mkdir(parents=True, exist_ok=True)
        marker = read_marker(self.root)
        if marker is None:
            write_marker(self.root, own_report_files(self.root, None))
        return self

    def _files(self, pattern: str) -> list[Path]:
        if not self.runs.exists():
            return []
        return sorted(p for p in self.runs.glob(pattern) if not p.name.startswith(TMP_PREFIX))

    def paths(self) -> list[Path]:
        """The record files (one per run), failures kept beside a record excluded."""
        return [p for p in self._files("*.json") if not p.name.endswith(FAILED_SUFFIX)]

    def failure_paths(self) -> list[Path]:
        """Files of failed reruns kept beside an ``ok`` record (``<key>.failed.json``)."""
        return self._files(f"*{FAILED_SUFFIX}")

    def records(self) -> Iterator[dict]:
        for path in self.paths():
            yield read_record(path)

    def failures(self) -> Iterator[dict]:
        """The failed reruns kept beside ``ok`` records, each validated."""
        for path in self.failure_paths():
            yield read_record(path)

    def record_path(self, key: str) -> Path:
        return self.runs / f"{key}.json"

    def failure_path(self, key: str) -> Path:
        return self.runs / f"{key}{FAILED_SUFFIX}"

    def load_all(self) -> dict[str, dict]:
        return {r["key"]: r for r in self.records()}

    def finished_keys(self) -> set:
        """Keys of the runs recorded with status ``ok`` (failed runs are not finished)."""
        return {key for key, record in self.load_all().items() if record["status"] == "ok"}

    def _holds_ok(self, key: str) -> bool:
        try:
            return read_record(self.record_path(key))["status"] == "ok"
        except (FileNotFoundError, RecordError):
            return False

    def write(self, record: dict) -> Path:
        """Writes ``record`` and returns its path: ``runs/<key>.json``, or, for a failure of a
        run whose ``ok`` record exists, ``runs/<key>.failed.json`` beside it (the good result
        stays). An ``ok`` record removes a failure kept beside it."""
        validate_record(record, f"record {record.get('key')}")
        self.mark()
        key = record["key"]
        text = json.dumps(record, indent=1, sort_keys=True) + "\n"
        if record["status"] == "failed" and self._holds_ok(key):
            path = self.failure_path(key)
            atomic_write(path, text)
            _remember(path, text)
            return path
        path = self.record_path(key)
        atomic_write(path, text)
        _remember(path, text)
        self.failure_path(key).unlink(missing_ok=True)
        return path
