"""Files a run writes where it executes: per-step checkpoints and its final model.

**Checkpoints** (``DIR/checkpoints/<key>/step-<k>.pt``, k 1-based): after a finished step, the
strategy's state (``FastTemplate.checkpoint_state``: model, optimizer, generators, plugins, the
global random states), the evaluation so far, the per-step costs so far and the source's
bookkeeping, in one ``torch.save`` file written atomically; the previous step's file is then
removed. A run that finds a checkpoint resumes after its step, and its record equals an
uninterrupted run's apart from timings (``environment.resumed_after_step`` says it resumed).
The driver deletes a run's checkpoints once its record is written.

When they are written (``--checkpoints``): ``auto`` (default) after a step once at least
``AUTO_SECONDS`` passed since the run started or since its last checkpoint, so short runs
(split-digits: well under a second per step) never pay for them and long ones lose at most a
step; ``always`` after every step but the last; ``off`` never (nor are they read).

**Models** (``DIR/models/<key>.pt``): the run's final model object (``torch.save``), loadable
with ``torch.load(path, weights_only=False)`` where ``strategies`` can be imported; for PNC a
``ClonedNetwork`` whose ``remove(k)`` works.
"""
from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from benchmark.core.strategy_state import saved_bytes
from benchmark.run.choices import AUTO_SECONDS
from benchmark.run.folder import atomic_write

FORMAT = "clonebench.checkpoint/1"
STEP_FILE = re.compile(r"step-(\d+)\.pt")


def save_model(model: torch.nn.Module, path: Path) -> Path:
    """Writes the model object to ``path`` atomically."""
    atomic_write(Path(path), saved_bytes(model))
    return Path(path)


class RunCheckpoints:
    """The checkpoints of run ``key`` under ``root/<key>/``, written by ``policy``."""

    def __init__(self, root: Path, key: str, policy: str = "auto", quiet: bool = False):
        self.folder = Path(root) / key
        self.key = key
        self.policy = policy
        self.quiet = quiet
        self.last = time.perf_counter()

    def _step_files(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = [(int(m[1]), p) for p in self.folder.iterdir()
                 if (m := STEP_FILE.fullmatch(p.name)) is not None]
        return sorted(found)

    def due(self, step: int, n_steps: int) -> bool:
        """Whether to checkpoint after ``step`` (1-based) of ``n_steps``."""
        if self.policy == "off" or step >= n_steps:
            return False
        return self.policy == "always" or time.perf_counter() - self.last >= AUTO_SECONDS

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Writes the state after ``step`` (1-based), then removes older checkpoints."""
        path = self.folder / f"step-{step}.pt"
        atomic_write(path, saved_bytes({"format": FORMAT, "key": self.key, "step": step,
                                        **state}))
        for older, old_path in self._step_files():
            if older != step:
                old_path.unlink(missing_ok=True)
        self.last = time.perf_counter()
        return path

    def latest(self) -> Optional[dict[str, Any]]:
        """The last checkpoint of the run, or None. One that cannot be read is removed with a
        notice, and the run starts from its first step."""
        if self.policy == "off":
            return None
        files = self._step_files()
        if not files:
            return None
        step, path = files[-1]
        try:
            state = torch.load(path, weights_only=False)
            if state.get("format") != FORMAT or state.get("key") != self.key or \
                    state.get("step") != step:
                raise ValueError("not a checkpoint of this run")
        except Exception as err:  # unreadable for any reason: start the run afresh
            shutil.rmtree(self.folder, ignore_errors=True)
            self._notice(f"checkpoint {path} is unusable ({type(err).__name__}); removed, the "
                         "run starts from its first step")
            return None
        return state

    def _notice(self, text: str) -> None:
        if not self.quiet:
            print(f"clonebench: {text}", file=sys.stderr)


def remove_checkpoints(root: Path, key: str) -> None:
    """Deletes run ``key``'s checkpoints (once its record is written)."""
    shutil.rmtree(Path(root) / key, ignore_errors=True)
