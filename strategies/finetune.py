"""``finetune``: plain training on each experience (Avalanche's ``Naive``), the lower bound of
the parameter-tuning family.

``lr_scale`` < 1 trains the steps after the first at a smaller learning rate (fine-tuning with
a small learning rate, the classical way to forget less), as ``dynamic-expansion``'s option of
the same name; 1 (default) is plain fine-tuning."""
from benchmark.core.options import Option
from strategies.base import FastTemplate
from strategies.registry import ALL_SCENARIOS, register_strategy


@register_strategy("finetune", summary="plain training on each experience (Avalanche Naive)",
                   family="parameter-tuning")
class Finetune(FastTemplate):
    """Trains all weights with cross-entropy on the current experience only."""

    SCENARIOS = ALL_SCENARIOS

    OPTIONS = (
        Option("lr_scale", float, 1.0, "learning rate of the steps after the first, as a "
               "multiple of the experiment's (< 1: the small-learning-rate trick)", low=1e-6),
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.steps_trained = 0

    def check_model_and_optimizer(self, **kwargs):
        super().check_model_and_optimizer(**kwargs)
        scale = 1.0 if self.steps_trained == 0 else self.hp["lr_scale"]
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = lr * scale

    def _after_training_exp(self, **kwargs):
        self.steps_trained += 1
        super()._after_training_exp(**kwargs)
