"""What a strategy keeps between steps, as one object ``torch.save`` can write, and how a new
strategy object built the same way continues from it (per-step checkpoints of long runs); the
bytes ``torch.save`` writes for such an object (``saved_bytes``), which files of it are
written from.

Whole Avalanche strategies do not pickle reliably (loggers hold open files, providers hold
closures), so the state is:

- ``attributes``: the strategy's own attributes (``vars``), except the template's per-step
  ones (``transient``: the current experience, data loader, mini-batch, ...) and values that
  cannot be pickled (a source provider, say), which the new object already has from its
  construction;
- ``plugins``: each plugin object, by position, except the evaluator and plugins that cannot be
  pickled (loggers), which the new object keeps;
- ``rng``: the global random states (torch on the CPU and every GPU, NumPy, Python), which
  layers created during a step draw from; the strategy's own ``torch.Generator`` is one of its
  attributes.

Everything is saved in one object, so references shared between attributes and plugins (the
model and its optimizer, the clock attribute and the clock plugin) stay shared when loaded.
"""
from __future__ import annotations

import io
import pickle
import random
from typing import Any

import numpy as np
import torch


class _Discard:
    """A file that forgets what is written to it (to test that a value pickles)."""

    def write(self, data) -> int:
        return len(data)


def picklable(value: Any) -> bool:
    """True if ``value`` pickles (tensors included), without keeping the bytes."""
    try:
        pickle.Pickler(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    except Exception:  # any reason it does not pickle: lambdas, open files, locks
        return False
    return True


def saved_bytes(obj: Any) -> bytes:
    """The bytes ``torch.save`` writes for ``obj`` (a state dict, a checkpoint, a model);
    ``torch.load`` of them gives it back."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def global_rng_state() -> dict[str, Any]:
    """The global random states: torch (CPU, and every GPU once CUDA is initialised), NumPy,
    Python."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def strategy_state(strategy, transient: frozenset[str]) -> dict[str, Any]:
    """The state of ``strategy`` between steps (see the module docstring)."""
    skip_plugin = {id(strategy.evaluator)} if getattr(strategy, "evaluator", None) else set()
    plugins = [p if id(p) not in skip_plugin and picklable(p) else None
               for p in strategy.plugins]
    attributes = {name: value for name, value in vars(strategy).items()
                  if name not in transient and name != "plugins" and picklable(value)}
    return {"attributes": attributes, "plugins": plugins, "rng": global_rng_state()}


def restore_strategy_state(strategy, state: dict[str, Any]) -> None:
    """Continues ``strategy`` (built as the saved one was) from ``strategy_state``'s result;
    sets the global random states too. ValueError if its plugins differ in number."""
    current = list(strategy.plugins)
    saved = state["plugins"]
    if len(saved) != len(current):
        raise ValueError(f"the checkpoint holds {len(saved)} plugins, the strategy has "
                         f"{len(current)}: it was made with other plugins")
    vars(strategy).update(state["attributes"])
    strategy.plugins = [old if old is not None else new for old, new in zip(saved, current)]
    set_global_rng_state(state["rng"])
