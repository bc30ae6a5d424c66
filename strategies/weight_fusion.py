"""``weight-fusion``: the non-iterative fusion seed, merging the step's source into the target
without any gradient training after the first step.

Step 1 trains the target like ``finetune``. At each later step k the protocol's source for e_k
(by default the backbone trained on e_k alone from the target's theta_0) is fused into the
target, with no SGD:

- body (every state-dict entry outside the head), by ``mode``:
  - ``sum``: theta_t + theta_s (plain summation);
  - ``mean``: (theta_t + theta_s) / 2;
  - ``task-arithmetic``: theta_t + lam * (theta_s - theta_0);
  - ``nonessential``: in each parameter tensor, the ``fraction`` of the target's weights with the
    lowest importance take the source's values, the rest keep the target's. Importance is
    ``fisher`` (diagonal Fisher: squared mini-batch gradients of the cross-entropy, averaged over
    the mini-batches, computed on each past step's data at the end of that step and summed over
    steps) or ``magnitude`` (|theta_t|). Ranking is per tensor, not global, because layers
    differ in scale; ties are broken by index.
  Summation modes apply the rule to float buffers too (BatchNorm running statistics);
  ``nonessential`` keeps the target's buffers. Integer buffers are always the target's.
- head: rows (weights and biases) of the classes seen before step k come from the target, rows
  of e_k's classes from the source; rows of unseen classes stay the target's (they are masked).
- normalisation statistics: BatchNorm running statistics are re-estimated on e_k's training
  data (one pass, cumulative average) when ``reestimate_norm`` is true.

Per step the record gets the mode, the fraction of parameter elements that changed (all
parameters, and the body alone) and the number of normalisation layers re-estimated.

Defaults (tuned on split-digits, seed 0 only, by final accuracy A_T; docs/strategies-rivals.md
has the figures): ``sum`` with re-estimated statistics scored best (0.64); task-arithmetic
scored 0.53 at lam = 1 (the best of 0.25 to 3), nonessential at most 0.44 (magnitude
importance, fraction 0.3: the best of the fractions tried between 0.1 and 0.9), mean 0.30.
With BatchNorm after every linear layer the sum's scale is mostly absorbed by the re-estimated
statistics, and repeated summation weighs every step's network equally, whereas repeated
averaging halves the weight of all earlier steps at each step.
"""
from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from typing import Optional

import torch
from torch import nn

from benchmark.core.errors import UsageError
from benchmark.core.options import Option
from benchmark.core.tensors import TensorLoader, experience_tensors, stored_tensors
from strategies.base import FastTemplate, Phase, count_parameters, module_bytes, tensor_bytes
from strategies.registry import ALL_SCENARIOS, register_strategy

State = dict[str, torch.Tensor]
SUMMATION_MODES = ("sum", "mean", "task-arithmetic")
MODES = SUMMATION_MODES + ("nonessential",)
IMPORTANCES = ("fisher", "magnitude")
HEAD_PREFIX = "head."

def fuse_summation(target: State, source: State, initial: State, mode: str,
                   lam: float = 1.0) -> State:
    """Entry-wise summation fusion of state dicts (float entries; integer ones from the target).

    sum: t + s; mean: (t + s) / 2; task-arithmetic: t + lam (s - theta_0).
    """
    fused = {}
    for name, t in target.items():
        if not t.is_floating_point():
            fused[name] = t.clone()
            continue
        s = source[name].to(t)
        if mode == "sum":
            fused[name] = t + s
        elif mode == "mean":
            fused[name] = (t + s) / 2
        elif mode == "task-arithmetic":
            fused[name] = t + lam * (s - initial[name].to(t))
        else:
            raise ValueError(f"unknown summation mode {mode!r}")
    return fused


def least_important_mask(importance: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean mask of the floor(fraction * numel) elements of lowest importance (ties by index)."""
    k = int(fraction * importance.numel())
    mask = torch.zeros(importance.numel(), dtype=torch.bool, device=importance.device)
    if k > 0:
        order = torch.argsort(importance.flatten(), stable=True)
        mask[order[:k]] = True
    return mask.view_as(importance)


def fuse_nonessential(target: State, source: State, importance: State, fraction: float) -> State:
    """The target with, in each entry named in ``importance``, its least important ``fraction``
    of elements replaced by the source's values; every other entry is the target's."""
    fused = {name: t.clone() for name, t in target.items()}
    for name, imp in importance.items():
        mask = least_important_mask(imp, fraction)
        fused[name] = torch.where(mask, source[name].to(target[name]), target[name])
    return fused


def take_head_rows(state: State, source: State, classes: Iterable[int],
                   head_prefix: str = HEAD_PREFIX) -> State:
    """``state`` with the head rows (weight and bias) of ``classes`` copied from ``source``."""
    out = dict(state)
    rows = torch.as_tensor(sorted(classes), dtype=torch.long)
    for name in (head_prefix + "weight", head_prefix + "bias"):
        if name in out:
            merged = out[name].clone()
            merged[rows.to(merged.device)] = source[name].to(merged)[rows.to(merged.device)]
            out[name] = merged
    return out


def changed_fraction(before: State, after: State, names: Iterable[str]) -> float:
    """Fraction of the elements of the named entries whose value differs between two states."""
    changed = total = 0
    for name in names:
        changed += int((before[name] != after[name]).sum())
        total += before[name].numel()
    return changed / total if total else 0.0


def fisher_diagonal(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int) -> State:
    """Diagonal Fisher of the cross-entropy: squared mini-batch gradients averaged over the
    mini-batches (model in eval mode; EWC's estimate). Keys are parameter names."""
    was_training = model.training
    model.eval()
    params = dict(model.named_parameters())
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    loader = TensorLoader(x, y, batch_size, shuffle=False)
    loss_fn = nn.CrossEntropyLoss()
    for xb, yb, _ in loader:
        grads = torch.autograd.grad(loss_fn(model(xb), yb), list(params.values()),
                                    allow_unused=True)
        for (name, _), g in zip(params.items(), grads):
            if g is not None:
                fisher[name] += g.detach() ** 2
    for f in fisher.values():
        f /= max(len(loader), 1)
    model.train(was_training)
    return fisher


def norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def cumulative_statistics(norms: list[nn.modules.batchnorm._BatchNorm]):
    """Within the block, the layers' running statistics start afresh and are the cumulative
    average of the batches they see in train mode (momentum None); their momenta are restored
    afterwards."""
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


@torch.no_grad()
def reestimate_norm_statistics(model: nn.Module, x: torch.Tensor, batch_size: int) -> int:
    """Running statistics of every BatchNorm layer recomputed from ``x`` (cumulative average
    over one pass); other entries untouched. Returns the number of layers re-estimated. The
    strategy does the same in a phase of its own (``WeightFusion``)."""
    norms = norm_layers(model)
    if not norms:
        return 0
    was_training = model.training
    with cumulative_statistics(norms):
        model.train()
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            if len(batch) > 1 or len(x) == 1:  # BatchNorm cannot take one sample in train mode
                model(batch)
    model.train(was_training)
    return len(norms)


class SkipSingles:
    """A loader's batches except a final one of a single sample (BatchNorm cannot take it in
    train mode), unless the data is that one sample."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        total = len(self.loader.y)
        for batch in self.loader:
            if len(batch[1]) > 1 or total == 1:
                yield batch


@register_strategy("weight-fusion", summary="non-iterative fusion of the source's weights into "
                   "the target (summation or nonessential weights), no training after step 1",
                   family="fusion", uses_source=True, same_source_architecture=True)
class WeightFusion(FastTemplate):
    """Trains at the first step, then fuses each step's source into the target without SGD.

    A later step has one phase: with ``reestimate_norm``, one forward-only pass over the step's
    data in train mode, which re-estimates the BatchNorm statistics of the fused network
    (cumulative average); plugins see its iterations."""

    SCENARIOS = ALL_SCENARIOS

    OPTIONS = (
        Option("mode", str, "sum",
               "how the source's body enters the target: theta_t + theta_s, their mean, "
               "theta_t + lam (theta_s - theta_0), or the target's least important weights only",
               choices=MODES),
        Option("lam", float, 1.0,
               "scale of the task vector theta_s - theta_0 (mode=task-arithmetic)",
               low=0.0),
        Option("fraction", float, 0.3,
               "fraction of each weight tensor overwritten by the source (mode=nonessential)",
               low=0.0, high=1.0),
        Option("importance", str, "magnitude",
               "importance of the target's weights (mode=nonessential)", choices=IMPORTANCES),
        Option("reestimate_norm", bool, True,
               "re-estimate BatchNorm running statistics on the step's data after fusing"),
    )

    def __init__(self, *, model, source_provider=None, initial_state: Optional[State] = None,
                 **kwargs):
        super().__init__(model=model, **kwargs)
        if source_provider is None:
            raise UsageError("weight-fusion needs a source provider (the protocol's [source])")
        if self.hp["mode"] == "task-arithmetic" and initial_state is None:
            raise UsageError("weight-fusion mode=task-arithmetic needs initial_state (theta_0)")
        if not hasattr(model, "head"):
            raise UsageError("weight-fusion needs a model with a linear `head` (a BlockNet)")
        self.source_provider = source_provider
        self.initial_state = (None if initial_state is None else
                              {k: v.detach().clone() for k, v in initial_state.items()})
        self.mode, self.lam, self.fraction = self.hp["mode"], self.hp["lam"], self.hp["fraction"]
        self.importance = self.hp["importance"]
        self.reestimate_norm = self.hp["reestimate_norm"]
        self.fisher: Optional[State] = None
        self.steps_done = 0
        self._last: dict = {}

    @classmethod
    def context_kwargs(cls, ctx):
        return {"source_provider": ctx.source_provider, "initial_state": ctx.initial_state}

    def training_phases(self):
        if self.steps_done == 0:
            yield from super().training_phases()
            self._last = {"mode": "train", "fraction_changed": None,
                          "trainable_parameters": count_parameters(self.model, True)}
            return
        self._last = self.fuse(self.experience)
        norms = norm_layers(self.model)
        if not (self.reestimate_norm and norms):
            self._last["norm_layers_reestimated"] = 0
            return
        with cumulative_statistics(norms):
            self.model.train()
            x, y, decode = stored_tensors(self.experience)
            loader = self.tensor_loader(x.to(self.device), y.to(self.device), shuffle=False,
                                        batch_size=self.eval_mb_size, decode=decode)
            yield Phase("reestimate-norm", 1, SkipSingles(loader))
        self._last["norm_layers_reestimated"] = len(norms)

    def state_bytes(self) -> int:
        """theta_0 for task arithmetic; the summed Fisher for Fisher importances."""
        kept = module_bytes(None)
        if self.mode == "task-arithmetic" and self.initial_state is not None:
            kept += tensor_bytes(self.initial_state.values())
        if self.fisher is not None:
            kept += tensor_bytes(self.fisher.values())
        return kept

    def _importance(self, target: State) -> State:
        names = [n for n, _ in self.model.named_parameters() if not n.startswith(HEAD_PREFIX)]
        if self.importance == "magnitude":
            return {n: target[n].abs() for n in names}
        return {n: self.fisher[n] for n in names}

    def fuse(self, experience) -> dict:
        """Fuses the source of ``experience`` into the model; returns the step's facts.

        The source is fetched first, with gradients enabled: the provider may train it."""
        source = self.source_provider(experience).state_dict()
        with torch.no_grad():
            return self._fuse_state(experience, source)

    def _fuse_state(self, experience, source: State) -> dict:
        new_classes = list(experience.classes_in_this_experience)
        target = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        body = {k: v for k, v in target.items() if not k.startswith(HEAD_PREFIX)}
        if self.mode in SUMMATION_MODES:
            fused = fuse_summation(body, source, self.initial_state or {}, self.mode, self.lam)
        else:
            fused = fuse_nonessential(body, source, self._importance(target), self.fraction)
        fused.update({k: v for k, v in target.items() if k.startswith(HEAD_PREFIX)})
        fused = take_head_rows(fused, source, new_classes)
        self.model.load_state_dict(fused)
        after = self.model.state_dict()
        params = [n for n, _ in self.model.named_parameters()]
        return {
            "mode": self.mode,
            "fraction_changed": changed_fraction(target, after, params),
            "fraction_changed_body": changed_fraction(
                target, after, [n for n in params if not n.startswith(HEAD_PREFIX)]),
            "trainable_parameters": 0,
        }

    def _after_training_exp(self, **kwargs):
        if self.mode == "nonessential" and self.importance == "fisher":
            x, y = experience_tensors(self.experience)
            step_fisher = fisher_diagonal(self.model, x.to(self.device), y.to(self.device),
                                          self.train_mb_size)
            self.fisher = step_fisher if self.fisher is None else {
                n: self.fisher[n] + f for n, f in step_fisher.items()}
        self.steps_done += 1
        super()._after_training_exp(**kwargs)

    def step_report(self) -> dict:
        return dict(self._last)
