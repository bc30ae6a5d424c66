"""``lwf``: Learning without Forgetting (Li & Hoiem 2016) through Avalanche's ``LwFPlugin``.

The loss adds alpha * KL distillation (temperature T) between the previous model's and the
current model's outputs on the classes seen before, computed on the current experience's inputs.
The copy of the previous model is the strategy's state (``state_bytes``).
"""
from avalanche.training.plugins import LwFPlugin

from benchmark.core.options import Option
from strategies.base import FastTemplate
from strategies.registry import register_strategy


@register_strategy("lwf", summary="Learning without Forgetting (Avalanche LwFPlugin)",
                   family="parameter-tuning")
class LwF(FastTemplate):
    """Finetuning plus distillation from the model of the previous step."""

    OPTIONS = (
        Option("alpha", float, 1.0, "weight of the distillation loss", low=0.0),
        Option("temperature", float, 2.0, "softmax temperature of the distillation", low=1e-3),
    )

    def own_plugins(self):
        return [LwFPlugin(self.hp["alpha"], self.hp["temperature"])]
