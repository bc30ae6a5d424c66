"""``lwf``: Learning without Forgetting (Li & Hoiem 2016) through Avalanche's ``LwFPlugin``.

The loss adds alpha * KL distillation (temperature T) between the previous model's and the
current model's outputs on the classes seen before, computed on the current experience's inputs.
"""
from avalanche.training.plugins import LwFPlugin

from strategies.base import FastTemplate
from strategies.registry import Option, register_strategy

OPTIONS = (
    Option("alpha", float, 0.5, "weight of the distillation loss (tuned on split-digits)",
           low=0.0),
    Option("temperature", float, 1.0, "softmax temperature of the distillation", low=1e-3),
)


class LwF(FastTemplate):
    """Finetuning plus distillation from the model of the previous step."""

    def __init__(self, *, model, optimizer, alpha: float = 0.5, temperature: float = 1.0,
                 plugins=None, **kwargs):
        super().__init__(model=model, optimizer=optimizer,
                         plugins=[LwFPlugin(alpha, temperature)] + list(plugins or []), **kwargs)


@register_strategy("lwf", summary="Learning without Forgetting (Avalanche LwFPlugin)",
                   options=OPTIONS)
def build_lwf(model, ctx, alpha, temperature):
    return LwF(model=model, optimizer=ctx.train.make_optimizer(model.parameters()), alpha=alpha,
               temperature=temperature, **ctx.template_kwargs())
