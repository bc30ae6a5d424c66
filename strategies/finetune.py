"""``finetune``: plain training on each experience (Avalanche's ``Naive``), the lower bound of
the parameter-tuning family."""
from strategies.base import FastTemplate
from strategies.registry import register_strategy


class Finetune(FastTemplate):
    """Trains all weights with cross-entropy on the current experience only."""


@register_strategy("finetune", summary="plain training on each experience (Avalanche Naive)")
def build_finetune(model, ctx):
    return Finetune(model=model, optimizer=ctx.train.make_optimizer(model.parameters()), **ctx.template_kwargs())
