"""Scenarios: how a stream's data become the steps the strategies see (docs/design.md,
"Scenarios"). A scenario is added by writing one module that calls ``register_scenario`` and
importing it below."""
from benchmark.scenarios import class_incremental, cloning, domain, mixed  # noqa: F401
from benchmark.scenarios.registry import (  # noqa: F401
    DEFAULT_SCENARIO,
    SCENARIOS,
    ScenarioSpec,
    StreamFacts,
    apply_scenario,
    check_scenario,
    register_scenario,
    resolve_scenario,
)
