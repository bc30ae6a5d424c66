"""``FastTemplate``: Avalanche's ``SupervisedTemplate`` without its per-sample overheads.

It keeps the template's structure (experiences, plugins and their hooks, ``train``/``eval``), so
Avalanche plugins such as ``EWCPlugin`` and ``LwFPlugin`` work unchanged. Three differences:

- mini-batches come from ``TensorLoader`` over the experience's tensors (on the device), not from
  a ``DataLoader`` that collates samples one by one;
- the training loop calls only the plugin hooks a plugin actually overrides, and no metric or
  logger runs unless the user passes an ``evaluator`` (the suite evaluates the model itself);
- shuffling uses the strategy's own ``torch.Generator`` seeded with ``seed``, so a run does not
  depend on, or disturb, the global RNG.

A NaN or infinite loss at the end of an epoch raises ``DivergenceError``.
Per-step facts a strategy wants recorded go to ``self.step_reports`` (one dict per step).
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Sequence

import torch
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from benchmark.data import TensorLoader, experience_tensors
from benchmark.errors import DivergenceError

ITERATION_EVENTS = (
    "before_training_iteration", "before_forward", "after_forward", "before_backward",
    "after_backward", "before_update", "after_update", "after_training_iteration",
)


def silent_evaluator() -> EvaluationPlugin:
    """An evaluation plugin with no metrics and no loggers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return EvaluationPlugin(loggers=[])


def _overrides(plugin, event: str) -> bool:
    """True if the plugin's ``event`` hook does something (is not the base class no-op)."""
    if isinstance(plugin, EvaluationPlugin) and not plugin.metrics and not plugin.loggers:
        return False
    base = getattr(SupervisedPlugin, event, None)
    return getattr(type(plugin), event, None) is not base


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class FastTemplate(SupervisedTemplate):
    """``SupervisedTemplate`` on tensor experiences (see the module docstring)."""

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                 criterion: Optional[nn.Module] = None, train_mb_size: int = 32,
                 train_epochs: int = 1, eval_mb_size: int = 512, device="cpu",
                 plugins: Optional[Sequence[SupervisedPlugin]] = None, evaluator=None,
                 seed: int = 0, **kwargs):
        super().__init__(model=model, optimizer=optimizer,
                         criterion=criterion if criterion is not None else nn.CrossEntropyLoss(),
                         train_mb_size=train_mb_size, train_epochs=train_epochs,
                         eval_mb_size=eval_mb_size, device=device, plugins=plugins,
                         evaluator=evaluator if evaluator is not None else silent_evaluator(),
                         **kwargs)
        self.generator = torch.Generator().manual_seed(seed)
        self.step_reports: List[Dict] = []

    def make_train_dataloader(self, shuffle: bool = True, **kwargs):
        x, y = experience_tensors(self.experience)
        x, y = x.to(self.device), y.to(self.device)
        self.dataloader = TensorLoader(x, y, self.train_mb_size, shuffle=shuffle,
                                       generator=self.generator,
                                       augment=getattr(self.experience, "augment", None))

    def training_epoch(self, **kwargs):
        hooks = {e: [getattr(p, e) for p in self.plugins if _overrides(p, e)]
                 for e in ITERATION_EVENTS}

        def fire(event):
            for hook in hooks[event]:
                hook(self, **kwargs)

        for self.mbatch in self.dataloader:
            if self._stop_training:
                break
            self._unpack_minibatch()
            fire("before_training_iteration")
            self.optimizer.zero_grad()
            self.loss = self._make_empty_loss()
            fire("before_forward")
            self.mb_output = self.forward()
            fire("after_forward")
            self.loss += self.criterion()
            fire("before_backward")
            self.backward()
            fire("after_backward")
            fire("before_update")
            self.optimizer_step()
            fire("after_update")
            fire("after_training_iteration")
        if self.mbatch is not None and not bool(torch.isfinite(self.loss).all()):
            raise DivergenceError(
                f"loss became {float(self.loss.detach().sum())} at step {self.experience.current_experience + 1}"
            )

    def _after_training_exp(self, **kwargs):
        super()._after_training_exp(**kwargs)
        report = self.step_report()
        if report is not None:
            self.step_reports.append(report)

    def step_report(self) -> Optional[Dict]:
        """Facts about the step just trained, for the run's record (default: trainable count)."""
        return {"trainable_parameters": count_parameters(self.model, trainable_only=True)}

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over all classes for a batch, model in eval mode (used by the suite's eval)."""
        self.model.eval()
        return self.model(x)
