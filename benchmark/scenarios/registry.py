"""The scenario registry: a scenario is an axis of an experiment beside the stream (its data)
and the backbone. It rearranges a built stream (``StreamData``, class-incremental as built) into
the steps the strategies see, and may add what the protocol then hands out: a pre-trained
target (``StreamData.pretrain``) and a model zoo of pre-trained sources (``StreamData.sources``).

A scenario is added by writing one module that calls ``register_scenario`` and importing it in
``benchmark/scenarios/__init__.py``. Each strategy declares the scenarios it supports
(``SCENARIOS`` on its class); the plan refuses an unsupported pair before anything runs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from benchmark.core.errors import UsageError
from benchmark.core.options import Option, Registry, resolve
from benchmark.data.base import StreamData

DEFAULT_SCENARIO = "class-incremental"


@dataclass(frozen=True)
class StreamFacts:
    """What the plan knows of a stream before reading data: its class count, input shape and
    image shape (None when its inputs are not images)."""

    num_classes: int
    input_shape: tuple[int, ...]
    image_shape: Optional[tuple[int, ...]]


@dataclass(frozen=True)
class ScenarioSpec:
    """A registered scenario.

    ``apply(data, seed, options) -> StreamData`` rearranges a built stream; ``check(options,
    facts)`` raises UsageError when the options do not fit the stream (the plan calls it);
    ``receives`` says what each strategy is given, ``evaluated`` on what it is evaluated (for
    ``clonebench list`` and the report)."""

    name: str
    summary: str
    apply: Callable[[StreamData, int, dict[str, Any]], StreamData]
    receives: str
    evaluated: str
    options: tuple[Option, ...] = ()
    check: Optional[Callable[[dict[str, Any], StreamFacts], None]] = None


SCENARIOS: Registry[ScenarioSpec] = Registry("scenario")


def register_scenario(spec: ScenarioSpec) -> ScenarioSpec:
    """Adds a scenario to the registry (one call per scenario module)."""
    return SCENARIOS.add(spec)


def resolve_scenario(given: dict[str, Any]) -> dict[str, Any]:
    """``{"name": ..., **options}`` with every option of the named scenario, validated;
    UsageError for an unknown scenario or option, or a bad value."""
    given = dict(given)
    name = given.pop("name", DEFAULT_SCENARIO)
    if not isinstance(name, str):
        raise UsageError(f"malformed config: [scenario] name must be a string, got {name!r}")
    spec = SCENARIOS.get(name)
    return {"name": name, **resolve(spec.options, given, name, "scenario")}


def check_scenario(resolved: dict[str, Any], facts: StreamFacts) -> None:
    """UsageError when the scenario's options do not fit the stream (class count, shape)."""
    spec = SCENARIOS.get(resolved["name"])
    if spec.check is not None:
        spec.check({k: v for k, v in resolved.items() if k != "name"}, facts)


def apply_scenario(resolved: Optional[dict[str, Any]], data: StreamData, seed: int
                   ) -> StreamData:
    """The stream as the scenario ``resolved`` arranges it (None: class-incremental, as
    built)."""
    if resolved is None:
        return data
    spec = SCENARIOS.get(resolved["name"])
    out = spec.apply(data, seed, {k: v for k, v in resolved.items() if k != "name"})
    out.scenario = resolved["name"]
    return out


class CountOrAll(Option):
    """An option whose value is a positive integer or the word ``all``."""

    def parse(self, value: Any, owner: str) -> Any:
        if isinstance(value, str) and value.strip().lower() == "all":
            return "all"
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"bad value {value!r} for {owner}.{self.name}: expected a positive "
                             "integer or all")
        return value
