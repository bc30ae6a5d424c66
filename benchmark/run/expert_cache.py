"""The on-disk cache of source experts (``DIR/experts/<key>.pt``), with a checksum.

Each file holds ``{"format", "sha256", "state"}``: the expert's state dict and the SHA-256 of its
tensors (names, dtypes, shapes and bytes, ``state_digest``). An entry that cannot be read, is
not in this format (e.g. written by an older version), or whose tensors do not match their
checksum is removed with one notice line on stderr, and the caller trains the expert again: a
damaged cache never fails a run.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Optional

import torch

from benchmark.core.errors import first_line
from benchmark.core.strategy_state import saved_bytes
from benchmark.run.folder import atomic_write

FORMAT = "clonebench.expert/1"


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over every entry of a state dict: name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_expert(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Writes a cache entry atomically, with its checksum."""
    atomic_write(Path(path), saved_bytes({"format": FORMAT, "sha256": state_digest(state),
                                          "state": state}))


def _problem(path: Path) -> tuple[Optional[dict], str]:
    """(state, "") for a valid entry, else (None, what is wrong with it)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file: truncated, not a zip, unpickling refused
        return None, f"unreadable: {type(err).__name__}: {first_line(err)}"
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(
            data.get("state"), dict):
        return None, "not in the current cache format"
    if state_digest(data["state"]) != data.get("sha256"):
        return None, "checksum mismatch"
    return data["state"], ""


def load_expert(path: Path) -> Optional[dict[str, torch.Tensor]]:
    """The cached state dict at ``path``, or None when there is no usable entry (a bad one is
    removed, with one notice line)."""
    path = Path(path)
    if not path.exists():
        return None
    state, problem = _problem(path)
    if state is None:
        path.unlink(missing_ok=True)
        print(f"clonebench: expert cache entry {path} was removed ({problem}); the expert is "
              "trained again", file=sys.stderr)
    return state
