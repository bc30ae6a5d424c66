"""``joint`` (reference): after each step, trained on the union of every experience seen so far.

This is the upper bound of the suite, never a rival: it keeps the training tensors of past
experiences, which the protocol forbids every other strategy (their bytes are its state). At
step k it trains for the experiment's epochs on e_1 u ... u e_k with cross-entropy over all
outputs.

Choice: by default (``init="current"``) step k starts from the weights reached after step k-1
(incremental joint training, the usual reference of class-incremental papers, cheaper); with
``init="theta0"`` every step restarts from the target's initial weights theta_0 and a fresh
optimizer (classical joint training from scratch on the data seen so far).
"""
from __future__ import annotations

from typing import Optional

import torch

from benchmark.core.errors import UsageError
from benchmark.core.options import Option
from benchmark.core.tensors import stored_tensors
from strategies.base import FastTemplate, tensor_bytes
from strategies.registry import CLASS_INCREMENTAL, DOMAIN, MIXED, register_strategy


@register_strategy("joint", summary="reference upper bound: trained on all data seen so far",
                   family="reference", role="reference", note="upper bound",
                   keeps_samples=True)
class Joint(FastTemplate):
    """Trains on the union of the training data of every experience seen so far."""

    SCENARIOS = (CLASS_INCREMENTAL, DOMAIN, MIXED)

    OPTIONS = (
        Option("init", str, "current",
               "weights each step starts from: those after the previous step, or theta_0",
               choices=("current", "theta0")),
    )

    def __init__(self, *, initial_state: Optional[dict[str, torch.Tensor]] = None, **kwargs):
        super().__init__(**kwargs)
        if self.hp["init"] == "theta0" and initial_state is None:
            raise UsageError("joint.init=theta0 needs initial_state (the target's theta_0)")
        self.initial_state = (None if initial_state is None else
                              {k: v.detach().clone() for k, v in initial_state.items()})
        self.seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def context_kwargs(cls, ctx):
        return {"initial_state": ctx.initial_state}

    def make_train_dataloader(self, shuffle: bool = True, **kwargs):
        """Batches of the union of the current and all past experiences' training tensors
        (kept in their stored form)."""
        x, y, decode = stored_tensors(self.experience)
        self.seen[self.experience.current_experience] = (x.to(self.device), y.to(self.device))
        steps = sorted(self.seen)
        xs = torch.cat([self.seen[k][0] for k in steps])
        ys = torch.cat([self.seen[k][1] for k in steps])
        self.dataloader = self.tensor_loader(xs, ys, shuffle, decode=decode,
                                             augment=getattr(self.experience, "augment", None))

    def state_bytes(self) -> int:
        """The stored training samples of every experience seen (inputs and labels)."""
        return tensor_bytes(t for pair in self.seen.values() for t in pair)

    def check_model_and_optimizer(self, **kwargs):
        if self.hp["init"] == "theta0":
            self.model.load_state_dict(self.initial_state)
            kwargs["reset_optimizer_state"] = True
        super().check_model_and_optimizer(**kwargs)

    def step_report(self):
        report = super().step_report()
        report["training_samples"] = sum(len(y) for _, y in self.seen.values())
        return report
