"""What makes a folder a results folder: its marker, atomic writes, and the report files the
suite wrote there.

A results folder carries a marker, ``DIR/.clonebench``: JSON with the folder's format and the
paths (relative to ``DIR``) of the files under ``tables/`` and ``figures/`` that the last report
build wrote. The suite writes into a folder only if it is empty, carries the marker, or is a
results folder of a version without markers (recognised by its valid records under ``runs/``;
it gets the marker when the suite next writes there). Any file under ``tables/`` or
``figures/`` that the suite did not write is *foreign*: the folder is refused, never cleaned.
A report build removes only its own files of an earlier build that it no longer produces
(``ReportWriter``).
"""
from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Optional, Union

from benchmark.core.errors import UsageError

MARKER = ".clonebench"
FORMAT = "clonebench.results/1"
TMP_PREFIX = ".tmp-"
REPORT_DIRS = ("tables", "figures")
# Report files of folders written before the marker existed: the tables that version wrote and
# its figures, all named ``<kind>__<subject>.png``.
LEGACY_TABLES = frozenset({"runs.csv", "steps.csv", "summary.csv", "summary.md", "summary.tex",
                           "tests.csv", "ranks.csv", "claim.csv", "ablations.csv"})
LEGACY_FIGURE = re.compile(r"[a-z_]+__[^/]+\.png")


def atomic_write(path: Path, data: Union[str, bytes]) -> None:
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


def read_marker(root: Path) -> Optional[dict]:
    """The marker of ``root`` (None if it has none); UsageError if it is not one of ours."""
    path = Path(root) / MARKER
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(
            data.get("report_files"), list):
        raise UsageError(f"{path} is not a clonebench marker (format {FORMAT!r}); delete it "
                         "if the folder holds only clonebench results, else choose another "
                         "folder")
    return data


def write_marker(root: Path, report_files) -> None:
    """Marks ``root`` as a results folder whose report files are ``report_files``."""
    body = {"format": FORMAT, "report_files": sorted(report_files)}
    atomic_write(Path(root) / MARKER, json.dumps(body, indent=1) + "\n")


def present_report_files(root: Path) -> set[str]:
    """Every entry under ``tables/`` and ``figures/`` (relative paths), temp files aside."""
    found = set()
    for folder in REPORT_DIRS:
        path = Path(root) / folder
        if path.is_dir():
            found.update(f"{folder}/{p.name}" for p in path.iterdir()
                         if not p.name.startswith(TMP_PREFIX))
    return found


def is_legacy_report_file(rel: str) -> bool:
    """True for a name the report wrote before folders had a marker."""
    folder, _, name = rel.partition("/")
    return (folder == "tables" and name in LEGACY_TABLES) or (
        folder == "figures" and LEGACY_FIGURE.fullmatch(name) is not None)


def own_report_files(root: Path, marker: Optional[dict]) -> set[str]:
    """The report files the suite wrote in ``root``: those its marker lists, or, in a folder
    without a marker, those named as the report named them then."""
    present = present_report_files(root)
    if marker is not None:
        return present & set(marker["report_files"])
    return {rel for rel in present if is_legacy_report_file(rel)}


def check_report_files(root: Path, marker: Optional[dict]) -> None:
    """UsageError naming the files under ``tables/`` or ``figures/`` the suite did not write."""
    foreign = sorted(present_report_files(root) - own_report_files(root, marker))
    if foreign:
        raise UsageError(
            f"{root} holds files the suite did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); move them out of tables/ and figures/, "
            "which the report rewrites")


class ReportWriter:
    """Writes a report build's files under ``tables/`` and ``figures/``, each atomically.

    ``finish()`` removes the files of the previous build that this one did not produce (only
    files the suite wrote; foreign files refuse the build when the writer is made) and records
    this build's files in the marker.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        marker = read_marker(self.root)
        check_report_files(self.root, marker)
        self.previous = own_report_files(self.root, marker)
        self.written: set[str] = set()

    def write(self, rel: str, data: Union[str, bytes]) -> Path:
        """Writes ``data`` to ``DIR/rel`` (``rel`` under ``tables/`` or ``figures/``)."""
        if rel.partition("/")[0] not in REPORT_DIRS or ".." in rel.split("/"):
            raise ValueError(f"report file {rel!r} is not under {' or '.join(REPORT_DIRS)}")
        path = self.root / rel
        atomic_write(path, data)
        self.written.add(rel)
        return path

    def finish(self) -> None:
        for rel in sorted(self.previous - self.written):
            (self.root / rel).unlink(missing_ok=True)
        write_marker(self.root, self.written)
