"""One option type and one registry for everything a user names: strategies, streams,
backbones and backends.

An ``Option`` is a typed, documented, validated setting with a default. Every registered thing
declares its options once; ``resolve`` fills in defaults and validates what a user gave (from a
TOML file, a ``--set`` string, or a constructor call), so validation lives in one place.

A ``Registry`` maps names to entries (any object with ``name``, ``summary`` and ``options``);
adding a strategy or a stream is writing one module that registers an entry.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Optional, TypeVar

from benchmark.core.errors import UsageError

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class Option:
    """A typed, documented, validated setting.

    ``type`` is ``int``, ``float``, ``str`` or ``bool``. ``choices`` restricts the values;
    ``low`` / ``high`` bound numbers (inclusive). ``nullable`` allows ``None`` (written
    ``none`` on the command line), meaning "not set"; a ``None`` default implies it.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: Optional[tuple[Any, ...]] = None
    low: Optional[float] = None
    high: Optional[float] = None
    nullable: bool = False

    def parse(self, value: Any, owner: str) -> Any:
        """``value`` checked and converted to the option's type; UsageError naming
        ``owner.name`` and the expected value if it is bad."""
        where = f"{owner}.{self.name}"
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"
                             and self.type is not str):
            if self.nullable or self.default is None:
                return None
            raise UsageError(f"bad value {value!r} for {where}: a value is required")
        if isinstance(value, str) and self.type is not str:
            value = self._from_text(value, where)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (self.type is bool) != isinstance(value, bool) or not isinstance(value, self.type):
            raise UsageError(f"bad value {value!r} for {where}: expected {self.type.__name__}")
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"bad value {value!r} for {where}: choose one of "
                             f"{', '.join(map(str, self.choices))}")
        if self.type in (int, float) and (
                value != value or (self.low is not None and value < self.low)
                or (self.high is not None and value > self.high)):
            raise UsageError(f"bad value {value!r} for {where}: must lie in "
                             f"[{_bound(self.low, '-inf')}, {_bound(self.high, 'inf')}]")
        return value

    def _from_text(self, text: str, where: str) -> Any:
        word = text.strip().lower()
        if self.type is bool:
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        else:
            try:
                return self.type(word)
            except ValueError:
                pass
        raise UsageError(f"bad value {text!r} for {where}: expected {self.type.__name__}")

    def describe(self) -> str:
        """``name=default: help (range)``, as ``clonebench list`` prints it."""
        extra = ""
        if self.choices:
            extra = f" (one of {', '.join(map(str, self.choices))})"
        elif self.low is not None or self.high is not None:
            extra = f" (in [{_bound(self.low, '-inf')}, {_bound(self.high, 'inf')}])"
        return f"{self.name}={self.default!r}: {self.help}{extra}"


def _bound(value: Optional[float], missing: str) -> str:
    return missing if value is None else f"{value:g}"


def resolve(options: Sequence[Option], given: Mapping[str, Any], owner: str,
            kind: str) -> dict[str, Any]:
    """Every option of ``options`` with its value: the given one, validated, else the default.
    ``owner`` names what the options belong to (a ``kind``: strategy, stream, backend);
    UsageError for a name that is not declared or a bad value (``owner.option`` named)."""
    known = {o.name: o for o in options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r} for {kind} {owner!r}; known: "
                         f"{', '.join(known) or 'none'} (`clonebench list` shows them)")
    return {name: opt.parse(given[name], owner) if name in given else opt.default
            for name, opt in known.items()}


def split_declared(options: Sequence[Option], kwargs: dict[str, Any]
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``kwargs`` split into (declared options, the rest)."""
    names = {o.name for o in options}
    return ({k: v for k, v in kwargs.items() if k in names},
            {k: v for k, v in kwargs.items() if k not in names})


T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (each with ``name``, ``summary`` and ``options``)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, entry: T) -> T:
        name = entry.name
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry called ``name``; UsageError listing the choices if there is none."""
        if name not in self._entries:
            raise UsageError(f"unknown {self.kind} {name!r}; choose one of: "
                             f"{', '.join(sorted(self._entries))} (`clonebench list` shows them)")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list:
        return list(self._entries)

    def values(self) -> list:
        return list(self._entries.values())

    def items(self) -> list:
        return list(self._entries.items())
