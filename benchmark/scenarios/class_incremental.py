"""``class-incremental`` (the default): the stream as built, disjoint class sets per step; at
step k a strategy receives e_k's data and is evaluated on every class seen, with no task label.
Its split is the stream's own options (``n_experiences``, ``first``)."""
from __future__ import annotations

from benchmark.data.base import StreamData
from benchmark.scenarios.registry import DEFAULT_SCENARIO, ScenarioSpec, register_scenario


def apply(data: StreamData, seed: int, options: dict) -> StreamData:
    return data


register_scenario(ScenarioSpec(
    name=DEFAULT_SCENARIO,
    summary="disjoint class sets per step (the stream's own split)",
    apply=apply,
    receives="step k's data (and its own memory)",
    evaluated="all classes seen, no task label",
))
