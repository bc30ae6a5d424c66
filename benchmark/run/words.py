"""Words a user types that the plan reads: experiment names and ``--seeds`` lists."""
from __future__ import annotations

import re

from benchmark.core.errors import UsageError

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
SEED_WORD = re.compile(r"(\d+)(?:-(\d+))?")
MAX_SEEDS = 10_000


def check_name(name: str) -> str:
    """``name`` if it is a plain name (letters, digits, ``-``, ``_``, ``.``; not starting with
    ``.``, no ``..``, no path separator), else UsageError."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise UsageError(f"bad name {name!r}: a name is letters, digits, '-', '_' and '.' "
                         "(no '..', no path separator, not starting with '.'), e.g. "
                         "my-experiment")
    return name


def parse_seeds(words: list[str]) -> list[int]:
    """Seeds from ``--seeds`` words: integers and inclusive ranges ``A-B``, separated by spaces
    or commas (``0 1 2``, ``0,1,2``, ``0-9``, ``0-3,7 9``), in the order given."""
    seeds: list[int] = []
    for word in words:
        for part in (p.strip() for p in word.split(",")):
            if not part:
                continue
            match = SEED_WORD.fullmatch(part)
            if match is None:
                raise UsageError(f"bad --seeds value {part!r}: expected integers or ranges like "
                                 "0-9, separated by spaces or commas")
            low = int(match[1])
            high = int(match[2]) if match[2] is not None else low
            if high < low:
                raise UsageError(f"bad --seeds range {part!r}: it ends before it starts")
            if high - low >= MAX_SEEDS or len(seeds) + high - low >= MAX_SEEDS:
                raise UsageError(f"--seeds {part!r}: at most {MAX_SEEDS} seeds")
            seeds.extend(range(low, high + 1))
    if not seeds:
        raise UsageError("--seeds needs at least one seed")
    return seeds
