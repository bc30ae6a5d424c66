"""``DIR/experiment.json``: the description of a results folder, built from all its records.

Several commands may write into one folder (another strategy, more seeds, other settings), so
the description is not any one command's: it lists every stream (with its options, backbones
and training settings), every strategy (with each set of hyper-parameters and the seeds run
with it), the seeds, devices, evaluation splits and sources present, with the values as the
records hold them (resolved and typed: ``--set lwf.alpha=2`` appears as ``2.0``), and the
failures kept beside ``ok`` records. It is rebuilt after every ``clonebench run`` and
``clonebench report``; the report shows it as the folder's configuration.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmark.run.folder import atomic_write
from benchmark.run.store import FAILED_SUFFIX, RUNS, ResultsStore

FORMAT = "clonebench.experiment/2"
DESCRIPTION = "experiment.json"


def _distinct(values: Iterable[Any]) -> list[Any]:
    """The distinct values (JSON-equal ones once), in order of first appearance."""
    seen: dict[str, Any] = {}
    for value in values:
        seen.setdefault(json.dumps(value, sort_keys=True), value)
    return list(seen.values())


def describe_records(records: list[dict], failures: list[dict], name: str) -> dict:
    """The folder's description (see the module docstring) from its records and the failed
    reruns kept beside them."""
    configs = [r["config"] for r in records]
    streams = {}
    for stream in _distinct(c["stream"] for c in configs):
        mine = [c for c in configs if c["stream"] == stream]
        streams[stream] = {
            "options": _distinct(c.get("stream_options") for c in mine),
            "backbones": _distinct(c.get("backbone") for c in mine),
            "train": _distinct(c.get("train") for c in mine),
        }
    strategies = {}
    for strategy in sorted({c["strategy"] for c in configs}):
        mine = [c for c in configs if c["strategy"] == strategy]
        strategies[strategy] = [
            {"hparams": hparams,
             "seeds": sorted({c["seed"] for c in mine if c.get("hparams") == hparams})}
            for hparams in _distinct(c.get("hparams") for c in mine)]
    return {
        "format": FORMAT,
        "name": name,
        "runs": len(records),
        "ok": sum(r["status"] == "ok" for r in records),
        "failed": sum(r["status"] == "failed" for r in records),
        "streams": streams,
        "strategies": strategies,
        "seeds": sorted({c["seed"] for c in configs}),
        "devices": _distinct(c.get("device") for c in configs),
        "splits": _distinct(c.get("split", "test") for c in configs),
        "scenarios": _distinct(c.get("scenario") or {"name": "class-incremental"}
                               for c in configs),
        "deterministic": _distinct(c.get("deterministic") for c in configs),
        "sources": _distinct(c["source"] for c in configs if c.get("source") is not None),
        "failed_reruns": [
            {"key": f["key"], "strategy": f["config"]["strategy"], "seed": f["config"]["seed"],
             "error": f["error"], "file": f"{RUNS}/{f['key']}{FAILED_SUFFIX}",
             "created": f.get("created")}
            for f in failures],
    }


def write_description(root: Path) -> dict:
    """Rebuilds ``DIR/experiment.json`` from the folder's records; returns it."""
    store = ResultsStore(root)
    description = describe_records(list(store.records()), list(store.failures()),
                                    Path(root).resolve().name)
    atomic_write(Path(root) / DESCRIPTION,
                 json.dumps(description, indent=1, sort_keys=True) + "\n")
    return description
