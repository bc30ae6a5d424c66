"""``lwf``: Learning without Forgetting (Li & Hoiem 2016) through Avalanche's ``LwFPlugin``.

The loss adds alpha * KL distillation (temperature T) between the previous model's and the
current model's outputs on the classes seen before, computed on the current experience's inputs.
The copy of the previous model is the strategy's state (``state_bytes``). The classes
distilled are those of the experiences seen (``classes_in_this_experience``), so a pre-trained
target's classes (the ``cloning`` scenario's first experience, which holds no data) are
distilled too.
"""
import copy

from avalanche.training.plugins import LwFPlugin

from benchmark.core.options import Option
from strategies.base import FastTemplate
from strategies.registry import ALL_SCENARIOS, register_strategy


class ExperienceClassesLwFPlugin(LwFPlugin):
    """``LwFPlugin`` whose classes seen come from the experience's declared classes instead of
    a pass over its dataset's targets (the same classes for an experience with data; also
    right for one without)."""

    def after_training_exp(self, strategy, **kwargs):
        lwf = self.lwf
        lwf.expcount += 1
        lwf.prev_model = copy.deepcopy(strategy.model)
        seen = lwf.prev_classes_by_task.setdefault(0, set())
        seen.update(int(c) for c in strategy.experience.classes_in_this_experience)


@register_strategy("lwf", summary="Learning without Forgetting (Avalanche LwFPlugin)",
                   family="parameter-tuning")
class LwF(FastTemplate):
    """Finetuning plus distillation from the model of the previous step."""

    SCENARIOS = ALL_SCENARIOS

    OPTIONS = (
        Option("alpha", float, 1.0, "weight of the distillation loss", low=0.0),
        Option("temperature", float, 2.0, "softmax temperature of the distillation", low=1e-3),
    )

    def own_plugins(self):
        return [ExperienceClassesLwFPlugin(self.hp["alpha"], self.hp["temperature"])]
