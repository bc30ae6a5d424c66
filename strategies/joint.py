"""``joint`` (reference): after each step, trained on the union of every experience seen so far.

This is the upper bound of the suite, never a rival: it keeps the training tensors of past
experiences, which the protocol (SPEC 3) forbids every other strategy. At step k it trains for
the experiment's epochs on e_1 u ... u e_k with cross-entropy over all outputs.

Choice: by default (``init="current"``) step k starts from the weights reached after step k-1
(incremental joint training, the usual reference of class-incremental papers, cheaper); with
``init="theta0"`` every step restarts from the target's initial weights theta_0 and a fresh
optimizer (classical joint training from scratch on the data seen so far).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from benchmark.data import TensorLoader, experience_tensors
from benchmark.errors import UsageError
from strategies.base import FastTemplate
from strategies.registry import Option, register_strategy

INITS = ("current", "theta0")

OPTIONS = (
    Option("init", str, "current",
           "weights each step starts from: those after the previous step, or theta_0",
           choices=INITS),
)


class Joint(FastTemplate):
    """Trains on the union of the training data of every experience seen so far."""

    def __init__(self, *, model, optimizer, init: str = "current",
                 initial_state: Optional[Dict[str, torch.Tensor]] = None, **kwargs):
        if init not in INITS:
            raise UsageError(f"bad value {init!r} for joint.init: choose current or theta0")
        if init == "theta0" and initial_state is None:
            raise UsageError("joint.init=theta0 needs initial_state (the target's theta_0)")
        super().__init__(model=model, optimizer=optimizer, **kwargs)
        self.init = init
        self.initial_state = (None if initial_state is None else
                              {k: v.detach().clone() for k, v in initial_state.items()})
        self.seen: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}

    def make_train_dataloader(self, shuffle: bool = True, **kwargs):
        """Batches of the union of the current and all past experiences' training tensors."""
        x, y = experience_tensors(self.experience)
        self.seen[self.experience.current_experience] = (x.to(self.device), y.to(self.device))
        steps = sorted(self.seen)
        xs = torch.cat([self.seen[k][0] for k in steps])
        ys = torch.cat([self.seen[k][1] for k in steps])
        self.dataloader = TensorLoader(xs, ys, self.train_mb_size, shuffle=shuffle,
                                       generator=self.generator,
                                       augment=getattr(self.experience, "augment", None))

    def check_model_and_optimizer(self, **kwargs):
        if self.init == "theta0":
            self.model.load_state_dict(self.initial_state)
            kwargs["reset_optimizer_state"] = True
        super().check_model_and_optimizer(**kwargs)

    def step_report(self):
        report = super().step_report()
        report["training_samples"] = sum(len(y) for _, y in self.seen.values())
        return report


@register_strategy("joint", summary="reference upper bound: trained on all data seen so far",
                   options=OPTIONS, reference=True)
def build_joint(model, ctx, init):
    return Joint(model=model, optimizer=ctx.train.make_optimizer(model.parameters()), init=init,
                 initial_state=ctx.initial_state, **ctx.template_kwargs())
