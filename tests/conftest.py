"""Session-scoped runs for the test suite: runs that several tests read (a small grid, a
one-run results folder) are computed once per session into temporary folders; tests that change
a results folder work on a copy. Helpers live in ``helpers.py``."""
from __future__ import annotations

import os
import tempfile

import pytest
import torch
from helpers import GRID_ARGS, SMALL_ARGS, copy_results, run_cli

# The suite's models are tiny: one intra-op thread is as fast on an idle machine and avoids the
# thread contention that makes training ~10x slower on a loaded 2-core one.
torch.set_num_threads(1)
# ``clonebench list`` keeps its text in a cache folder: the tests' own, never the user's.
os.environ["CLONEBENCH_CACHE"] = tempfile.mkdtemp(prefix="clonebench-cache-")


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
