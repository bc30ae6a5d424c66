"""``finetune``: plain training on each experience (Avalanche's ``Naive``), the lower bound of
the parameter-tuning family."""
from strategies.base import FastTemplate
from strategies.registry import ALL_SCENARIOS, register_strategy


@register_strategy("finetune", summary="plain training on each experience (Avalanche Naive)",
                   family="parameter-tuning")
class Finetune(FastTemplate):
    """Trains all weights with cross-entropy on the current experience only."""

    SCENARIOS = ALL_SCENARIOS
