"""``FastTemplate``: Avalanche's ``SupervisedTemplate`` without its per-sample overheads, with
training organised in *phases* that all run through the template's epoch and iteration hooks.

It keeps the template's structure (experiences, plugins and their hooks, ``train``/``eval``),
so Avalanche plugins (``EWCPlugin``, ``LwFPlugin``, loggers, schedulers, metrics) work
unchanged. Differences:

- mini-batches of a ``TensorExperience`` come from ``TensorLoader`` over its tensors (on the
  device), not from a ``DataLoader`` that collates samples one by one; any other Avalanche
  experience goes through Avalanche's own data loader, so its dataset's transforms are applied
  again at every epoch;
- the training loop calls only the plugin hooks a plugin actually overrides, and no metric or
  logger runs unless the user passes an ``evaluator`` (the suite evaluates the model itself);
- shuffling uses the strategy's own ``torch.Generator`` seeded with ``seed``, so a run does not
  depend on, or disturb, the global RNG;
- a step is a sequence of ``Phase``s (``training_phases``): each has its own data, optimizer,
  forward and loss, and runs ``epochs`` epochs through ``_before_training_epoch``,
  ``training_epoch`` (every iteration hook) and ``_after_training_epoch``. Ordinary strategies
  have one phase (the experience's data, ``self.optimizer``, ``self.model``, the criterion);
  PNC has several (gate training, one per candidate position, the refit);
- the mean loss of every epoch of every phase is kept in ``loss_curve`` (one list per step);
- a NaN or infinite loss at the end of an epoch raises ``DivergenceError``;
- ``checkpoint_state()`` / ``restore_checkpoint_state(state)`` save and restore what the
  strategy keeps between steps (``benchmark.core.strategy_state``), so a long run resumes
  after its last finished step with the same result.

Options: a subclass declares its hyper-parameters once, as ``OPTIONS`` (``Option``s); the
constructor takes them as keyword arguments and validates them (``self.hp`` holds the resolved
values). Per-step facts a strategy wants recorded go to ``self.step_reports``.
"""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from benchmark.core.errors import DivergenceError
from benchmark.core.options import Option, resolve, split_declared
from benchmark.core.strategy_state import restore_strategy_state, strategy_state
from benchmark.core.tensors import TensorExperience, TensorLoader, decoded

# The template's attributes that only live during a step (and the evaluator, whose loggers
# belong to the process): not part of a checkpoint.
TRANSIENT = frozenset({
    "experience", "adapted_dataset", "dataloader", "mbatch", "mb_output", "loss", "_phase",
    "_epoch_loss", "_epoch_batches", "_eval_streams", "current_eval_stream", "evaluator",
})
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


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the given tensors at their own dtypes."""
    return sum(t.numel() * t.element_size() for t in tensors)


def module_bytes(module: Optional[nn.Module]) -> int:
    """Bytes of every parameter and buffer of ``module`` (0 for None)."""
    if module is None:
        return 0
    return tensor_bytes(list(module.parameters()) + list(module.buffers()))


@dataclass
class Phase:
    """A part of a step's training, run through the template's loop.

    ``loader`` yields ``[x, y, t]`` mini-batches; ``optimizer`` None means forward passes only
    (e.g. re-estimating normalisation statistics); ``forward(x)`` defaults to the strategy's
    model and ``loss(output, y)`` to its criterion.
    """

    name: str
    epochs: int
    loader: Any
    optimizer: Optional[torch.optim.Optimizer] = None
    forward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    loss: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None


class _NoUpdate(torch.optim.Optimizer):
    """A stand-in optimizer for forward-only phases (no parameters, no update)."""

    def __init__(self):
        super().__init__([torch.zeros(1, requires_grad=True)], {})

    def step(self, closure=None):
        return None

    def zero_grad(self, set_to_none: bool = True):
        return None


class FastTemplate(SupervisedTemplate):
    """``SupervisedTemplate`` on tensor experiences, trained in phases (see the module
    docstring)."""

    OPTIONS: tuple[Option, ...] = ()
    # the scenarios this strategy supports (``strategies.registry``: names of
    # ``benchmark.scenarios``); a strategy of one's own supports class-incremental unless it says
    SCENARIOS: tuple[str, ...] = ("class-incremental",)
    registered_name: str = "strategy"

    def __init_subclass__(cls, **kwargs):
        """Shows the declared options in the constructor's signature (``help()``, and
        Avalanche's check of unexpected keyword arguments, both read it)."""
        super().__init_subclass__(**kwargs)
        init = cls.__init__
        sig = inspect.signature(init)
        params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
        names = {p.name for p in params}
        declared = [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default)
                    for o in cls.OPTIONS if o.name not in names]
        rest = [p for p in sig.parameters.values() if p.kind == p.VAR_KEYWORD]
        init.__signature__ = sig.replace(parameters=params + declared + rest)

    def __init__(self, *, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                 criterion: Optional[nn.Module] = None, train_mb_size: int = 32,
                 train_epochs: int = 1, eval_mb_size: int = 512, device="cpu",
                 plugins: Optional[Sequence[SupervisedPlugin]] = None, evaluator=None,
                 seed: int = 0, **kwargs):
        declared, rest = split_declared(self.OPTIONS, kwargs)
        self.hp: dict[str, Any] = resolve(self.OPTIONS, declared, self.registered_name,
                                          "strategy")
        self.seed = seed
        plugins = list(self.own_plugins()) + list(plugins or [])
        if optimizer is None:
            optimizer = _NoUpdate()
        super().__init__(model=model, optimizer=optimizer,
                         criterion=criterion if criterion is not None else nn.CrossEntropyLoss(),
                         train_mb_size=train_mb_size, train_epochs=train_epochs,
                         eval_mb_size=eval_mb_size, device=device, plugins=plugins,
                         evaluator=evaluator if evaluator is not None else silent_evaluator(),
                         **rest)
        self.generator = torch.Generator().manual_seed(seed)
        self.step_reports: list[dict] = []
        self.loss_curve: list[list[dict]] = []
        self._phase: Optional[Phase] = None
        self._epoch_loss: Optional[torch.Tensor] = None
        self._epoch_batches = 0

    # ---- construction ----------------------------------------------------------------
    def own_plugins(self) -> list[SupervisedPlugin]:
        """Plugins the strategy itself needs, built from ``self.hp`` (default: none)."""
        return []

    @classmethod
    def context_kwargs(cls, ctx) -> dict[str, Any]:
        """What the strategy takes from the protocol's context beyond the template's
        arguments (default: nothing)."""
        return {}

    @classmethod
    def from_context(cls, model: nn.Module, ctx, **hparams) -> FastTemplate:
        """The strategy as the suite builds it: an optimizer of the experiment's kind over the
        model's parameters, the context's template arguments and ``hparams``."""
        return cls(model=model, optimizer=ctx.train.make_optimizer(model.parameters()),
                   **ctx.template_kwargs(), **cls.context_kwargs(ctx), **hparams)

    # ---- data --------------------------------------------------------------------------
    def tensor_loader(self, x: torch.Tensor, y: torch.Tensor, shuffle: bool = True,
                      batch_size: Optional[int] = None, decode=None,
                      augment=None) -> TensorLoader:
        """A loader over tensors, shuffled with the strategy's generator."""
        return TensorLoader(x, y, batch_size or self.train_mb_size, shuffle=shuffle,
                            generator=self.generator, augment=augment, decode=decode)

    def experience_loader(self, indices: Optional[torch.Tensor] = None, shuffle: bool = True):
        """Training mini-batches of the current experience (or of the samples at ``indices``):
        a ``TensorLoader`` for a ``TensorExperience``, else Avalanche's data loader, so a
        dataset's transforms are applied anew at each epoch."""
        exp = self.experience
        if isinstance(exp, TensorExperience):
            x, y = exp.x, exp.y
            if indices is not None:
                x, y = x[indices.to(x.device)], y[indices.to(y.device)]
            return self.tensor_loader(x.to(self.device), y.to(self.device), shuffle,
                                      decode=exp.decode, augment=exp.augment)
        dataset = self.adapted_dataset if self.adapted_dataset is not None else \
            exp.dataset.train()
        if indices is not None:
            dataset = dataset.subset(indices.tolist())
        return torch.utils.data.DataLoader(dataset, batch_size=self.train_mb_size,
                                           shuffle=shuffle, generator=self.generator,
                                           drop_last=len(dataset) % self.train_mb_size == 1)

    def make_train_dataloader(self, shuffle: bool = True, **kwargs):
        if isinstance(self.experience, TensorExperience):
            self.dataloader = self.experience_loader(shuffle=shuffle)
        else:  # like TensorLoader, skip a final batch of one sample (BatchNorm cannot train)
            single = len(self.adapted_dataset) % self.train_mb_size == 1
            kwargs["drop_last"] = kwargs.get("drop_last", False) or single
            super().make_train_dataloader(shuffle=shuffle, **kwargs)

    # ---- the training loop ---------------------------------------------------------------
    def training_phases(self) -> Iterator[Phase]:
        """The phases of the current step (default: one, the ordinary training; none on a
        ``pretrained`` experience, whose target arrives trained)."""
        if getattr(self.experience, "pretrained", False):
            return
        yield Phase("train", self.train_epochs, self.dataloader, self.optimizer)

    def _train_exp(self, experience, eval_streams=None, **kwargs):
        self.loss_curve.append([])
        default_optimizer = self.optimizer
        for phase in self.training_phases():
            self.run_phase(phase, **kwargs)
        self.optimizer = default_optimizer
        self._phase = None

    def run_phase(self, phase: Phase, **kwargs) -> None:
        """``phase.epochs`` epochs of ``phase`` through the template's epoch hooks."""
        self._phase = phase
        self.dataloader = phase.loader
        self.optimizer = phase.optimizer if phase.optimizer is not None else _NoUpdate()
        for epoch in range(phase.epochs):
            self._before_training_epoch(**kwargs)
            if self._stop_training:
                self._stop_training = False
                break
            self.training_epoch(**kwargs)
            self._after_training_epoch(**kwargs)
            self._record_epoch(phase.name, epoch)

    def forward(self):
        if self.is_training and self._phase is not None and self._phase.forward is not None:
            return self._phase.forward(self.mb_x)
        return super().forward()

    def criterion(self):
        if self.is_training and self._phase is not None and self._phase.loss is not None:
            return self._phase.loss(self.mb_output, self.mb_y)
        return super().criterion()

    def training_epoch(self, **kwargs):
        hooks = {e: [getattr(p, e) for p in self.plugins if _overrides(p, e)]
                 for e in ITERATION_EVENTS}
        update = self._phase is None or self._phase.optimizer is not None

        def fire(event):
            for hook in hooks[event]:
                hook(self, **kwargs)

        for batch in self.dataloader:
            self.mbatch = batch
            if self._stop_training:
                break
            self._unpack_minibatch()
            fire("before_training_iteration")
            self.optimizer.zero_grad()
            self.loss = self._make_empty_loss()
            fire("before_forward")
            if update:
                self.mb_output = self.forward()
            else:
                with torch.no_grad():
                    self.mb_output = self.forward()
            fire("after_forward")
            if update:
                self.loss += self.criterion()
            fire("before_backward")
            if update:
                self.backward()
            fire("after_backward")
            fire("before_update")
            if update:
                self.optimizer_step()
            fire("after_update")
            fire("after_training_iteration")
            if update:
                self._add_batch_loss()

    def _add_batch_loss(self) -> None:
        loss = self.loss.detach()
        self._epoch_loss = loss if self._epoch_loss is None else self._epoch_loss + loss
        self._epoch_batches += 1

    def _record_epoch(self, phase: str, epoch: int) -> None:
        """Appends the epoch's mean loss to ``loss_curve``; DivergenceError if not finite."""
        total, batches = self._epoch_loss, self._epoch_batches
        self._epoch_loss, self._epoch_batches = None, 0
        if total is None:
            return
        mean = float(total) / batches
        self.loss_curve[-1].append({"phase": phase, "epoch": epoch + 1, "loss": mean})
        if mean != mean or mean in (float("inf"), float("-inf")):
            step = self.experience.current_experience + 1 if self.experience else "?"
            where = "" if phase == "train" else f" ({phase})"
            raise DivergenceError(f"loss became {mean} at step {step}{where}")

    def _after_training_exp(self, **kwargs):
        super()._after_training_exp(**kwargs)
        report = self.step_report()
        if report is not None:
            self.step_reports.append(report)

    # ---- what the suite reads --------------------------------------------------------------
    def step_report(self) -> Optional[dict]:
        """Facts about the step just trained, for the run's record (default: trainable count)."""
        return {"trainable_parameters": count_parameters(self.model, trainable_only=True)}

    def model_bytes(self) -> int:
        """Bytes of the model that predicts (every parameter and buffer)."""
        return module_bytes(self.model)

    def state_bytes(self) -> int:
        """Bytes of everything else kept for later steps (default: the plugins' state)."""
        return sum(plugin_state_bytes(p) for p in self.plugins)

    # ---- checkpoints ---------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """What the strategy keeps between steps (model, optimizer, generator, plugins, its
        own attributes) and the global random states, for ``torch.save``; call it between
        steps."""
        return strategy_state(self, TRANSIENT)

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Continues from ``checkpoint_state()`` of a strategy built the same way (same class,
        options, context and plugins): the next ``train`` gives what the saved one's would."""
        restore_strategy_state(self, state)

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor, step: Optional[int] = None) -> torch.Tensor:
        """Logits over all classes for a batch of model inputs, model in eval mode. ``step``
        (the experience the inputs come from) is ignored: no task label at test time; only an
        oracle reference (``pnc-oracle``) reads it."""
        self.model.eval()
        return self.model(x)


def plugin_state_bytes(plugin) -> int:
    """Bytes a plugin keeps between steps, when it says (``state_bytes()``), else what its
    known Avalanche state holds: EWC's importances and saved parameters, LwF's previous
    model."""
    own = getattr(plugin, "state_bytes", None)
    if callable(own):
        return int(own())
    total = 0
    for name in ("importances", "saved_params"):
        store = getattr(plugin, name, None)
        if isinstance(store, dict):
            for per_exp in store.values():
                items = per_exp.values() if isinstance(per_exp, dict) else [per_exp]
                total += tensor_bytes(getattr(v, "data", v) for v in items)
    prev = getattr(plugin, "prev_model", None)
    if prev is None and hasattr(plugin, "lwf"):
        prev = getattr(plugin.lwf, "prev_model", None)
    total += module_bytes(prev)
    return total


def decoded_experience(experience, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of a ``TensorExperience`` decoded, on ``device``."""
    return decoded(experience.x.to(device), experience.decode), experience.y.to(device)


# Avalanche wraps every template's __init__ in a check of its keyword arguments against the
# signatures of the class hierarchy. A subclass's wrapper already knows its declared options
# (``__init_subclass__`` above); FastTemplate's own __init__ receives them on their way to
# ``resolve``, so it is left unwrapped.
FastTemplate.__init__ = getattr(FastTemplate.__init__, "__wrapped__", FastTemplate.__init__)
