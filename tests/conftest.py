"""Shared helpers and session-scoped runs for the test suite.

Runs that several tests read (a small grid, a one-run results folder) are computed once per
session into temporary folders; tests that change a results folder work on a copy.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

from benchmark.cli import main

# The suite's models are tiny: one intra-op thread is as fast on an idle machine and avoids the
# thread contention that makes training ~10x slower on a loaded 2-core one.
torch.set_num_threads(1)

# The grid of the foundation's end-to-end tests: 3 strategies x 2 seeds, 2 epochs per step.
GRID_STRATEGIES = ("finetune", "ewc", "lwf")
GRID_SEEDS = (0, 1)
GRID_ARGS = ["run", "--stream", "split-digits", "--strategies", ",".join(GRID_STRATEGIES),
             "--seeds", *map(str, GRID_SEEDS), "--epochs", "2", "--device", "cpu", "--quiet"]
# A one-run results folder (finetune, seed 0, 1 epoch) for tests that only need valid records.
SMALL_ARGS = ["run", "--stream", "split-digits", "--strategies", "finetune", "--seeds", "0",
              "--epochs", "1", "--device", "cpu", "--quiet"]


@dataclass
class CliResult:
    """Exit status and captured output of one ``clonebench`` invocation."""

    code: int
    out: str
    err: str


def state_hash(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def assert_metrics_in_range(metrics: dict) -> None:
    """Accuracies and localities are fractions in [0, 1]; forgetting lies in [-1, 1]."""
    for name in ("final_accuracy", "final_accuracy_weighted", "average_incremental_accuracy",
                 "locality", "original_locality", "old_accuracy", "new_accuracy"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert -1.0 <= metrics["forgetting"] <= 1.0


def run_cli(args: List[str]) -> CliResult:
    """Runs ``clonebench ARGS`` in this process, capturing stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())


def load_records(root: Path) -> Dict[str, dict]:
    """Every record under ``root/runs`` as parsed JSON, by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((root / "runs").glob("*.json"))}


Snapshot = Dict[str, Tuple[str, bytes, int]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root``: kind, bytes (files) and modification time in nanoseconds."""
    root = Path(root)
    if not root.exists():
        return {}
    snap = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        if path.is_dir():
            snap[str(path.relative_to(root))] = ("dir", b"", stat.st_mtime_ns)
        else:
            snap[str(path.relative_to(root))] = ("file", path.read_bytes(), stat.st_mtime_ns)
    return snap


def copy_results(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def grid_results(tmp_path_factory):
    """The grid (finetune, ewc, lwf x seeds 0, 1; 2 epochs) run once: (folder, CliResult)."""
    out = tmp_path_factory.mktemp("grid") / "results"
    result = run_cli([*GRID_ARGS, "--out", out])
    assert result.code == 0, result.err
    return out, result


@pytest.fixture(scope="session")
def small_results(tmp_path_factory):
    """A results folder holding one finished run (finetune, seed 0, 1 epoch)."""
    out = tmp_path_factory.mktemp("small") / "results"
    result = run_cli([*SMALL_ARGS, "--out", out])
    assert result.code == 0, result.err
    return out


@pytest.fixture
def small_copy(small_results, tmp_path):
    """A private copy of ``small_results`` that a test may change."""
    return copy_results(small_results, tmp_path / "results")
