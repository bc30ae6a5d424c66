"""``pnc``: Partial Network Cloning as an Avalanche strategy.

Moves the ability to recognise a step's classes from a *source* network into the *target*
network without changing one parameter or buffer of the target; each step's clone is a separate
module that ``remove(step)`` deletes, after which the target's outputs are exactly the original
ones. The authors' code was never released; this is the suite's design (docs/design.md, "PNC"),
every choice a parameter:

Step 1 trains the target normally (cross-entropy on e_1), then freezes it (eval mode for good:
its BatchNorm statistics never move again). Each later step k, given the step's source:

1. **Localise** (phase ``gates``): learnable channel gates on the output of every source block
   are trained on e_k's data to keep the source's own predictions on e_k's classes (KL at
   ``distill_temperature``) plus ``sparsity`` x mean gate value; then binarised at
   ``gate_threshold``.
2. **Insert** (one phase per candidate position p, ``insert@p``): target features at p ->
   adapter -> the source's gated blocks p..L-1 (frozen copies) -> pooling -> a new head over
   e_k's classes (initialised from the source's head rows). Only the adapter and the new head
   train, on a (1 - ``val_fraction``) split of e_k; the best held-out accuracy picks p (ties: the
   later position), and with ``refit`` (phase ``refit``) the chosen module is trained again on
   all of e_k.
3. **Combine (routing)**: the output for class c of step s is log p(s | x) + log p(c | x, s).
4. **Remove**: ``model.remove(k)``.

Every phase runs through the template's epochs and iterations, so plugins, loggers and
schedulers see them. Usable from one's own Avalanche code: ``PNC(model=..., optimizer=...,
source_provider=fn)`` where ``fn(experience)`` returns the source for that experience; without
a provider PNC trains an expert itself on each experience from the model's initial weights. The
model may be a ``BlockNet``, an ``nn.Sequential`` whose last child is the linear head, or any
model with ``blocks`` and ``head`` (``benchmark.core.models.as_block_net``).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.errors import UsageError
from benchmark.core.models import as_block_net
from benchmark.core.options import Option
from benchmark.core.tensors import experience_tensors
from benchmark.core.training import TrainSettings, fit
from strategies.base import FastTemplate, Phase, count_parameters
from strategies.pnc.localise import ChannelGates, binarise
from strategies.pnc.network import ClonedNetwork, CloneModule
from strategies.pnc.routers import fit_router
from strategies.registry import register_strategy

ROUTINGS = ("gaussian", "energy", "logits")
ROUTER_SPACES = ("input+target", "target", "input")


def experience_classes(experience) -> list[int]:
    """The experience's classes (Avalanche's attribute, else the labels found in its data)."""
    classes = getattr(experience, "classes_in_this_experience", None)
    if classes is None:
        classes = sorted(set(experience_tensors(experience)[1].tolist()))
    return [int(c) for c in classes]


def parse_positions(text: str, depth: int) -> list[int]:
    """Candidate positions from ``auto`` (0..depth) or ``"0,2"``; UsageError if out of range."""
    if text == "auto":
        return list(range(depth + 1))
    try:
        positions = sorted({int(p) for p in text.split(",")})
    except ValueError:
        raise UsageError(f"bad PNC positions {text!r}: use auto or indices like 0,1") from None
    if not positions or positions[0] < 0 or positions[-1] > depth:
        raise UsageError(f"bad PNC positions {text!r}: indices must lie in 0..{depth}")
    return positions


@torch.no_grad()
def module_accuracy(module: CloneModule, target: nn.Module, x: torch.Tensor,
                    y_local: torch.Tensor, batch_size: int = 512) -> float:
    """Accuracy of a clone module alone on its step's classes (local labels)."""
    module.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        pred = module(target.features(xb, module.position)).argmax(1)
        correct += int((pred == y_local[start:start + batch_size]).sum())
    return correct / max(len(x), 1)


@register_strategy("pnc", summary="Partial Network Cloning: frozen target + removable cloned "
                   "source parts, routed", family="cloning", uses_source=True,
                   check=lambda hp, depth: parse_positions(hp["positions"], depth))
class PNC(FastTemplate):
    """Partial Network Cloning as an Avalanche strategy (see the module docstring)."""

    OPTIONS = (
        Option("routing", str, "gaussian", "how modules' outputs are combined",
               choices=ROUTINGS),
        Option("router_space", str, "input", "feature space of the gaussian router",
               choices=ROUTER_SPACES),
        Option("shrinkage", float, 0.1, "covariance shrinkage towards a scaled identity",
               low=0.0, high=1.0),
        Option("positions", str, "auto", "candidate insertion positions: auto (every block "
               "boundary) or comma-separated indices, 0 = input"),
        Option("gate_epochs", int, 10, "epochs of gate training (localisation)", low=0),
        Option("gate_lr", float, 0.05, "learning rate of the gates (Adam)", low=0.0),
        Option("sparsity", float, 0.5, "weight of the L1 penalty on the gates", low=0.0),
        Option("gate_threshold", float, 0.5, "gates above this value are kept", low=0.0,
               high=1.0),
        Option("distill_temperature", float, 2.0, "temperature of the gate distillation",
               low=1e-3),
        Option("insert_epochs", int, 0, "epochs of adapter and head training; 0 = the "
               "experiment's epochs", low=0),
        Option("val_fraction", float, 0.2, "share of the step's data held out to choose the "
               "position", low=0.0, high=0.9),
        Option("refit", bool, True, "train the chosen module again on all the step's data"),
        Option("adapter_norm", bool, False, "add a normalisation layer after the adapter"),
    )

    def __init__(self, *, model: nn.Module, source_provider: Optional[Callable] = None,
                 train_settings: Optional[TrainSettings] = None, **kwargs):
        super().__init__(model=model, **kwargs)
        self.source_provider = source_provider
        self.settings = train_settings or TrainSettings(
            epochs=self.train_epochs, batch_size=self.train_mb_size,
            lr=self.optimizer.param_groups[0]["lr"])
        self.hp["insert_epochs"] = self.hp["insert_epochs"] or self.train_epochs
        self.target_model = model
        self.initial_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        depth = len(model.blocks) if hasattr(model, "blocks") else None
        if depth is not None:
            parse_positions(self.hp["positions"], depth)
        self._report: dict = {}

    @classmethod
    def context_kwargs(cls, ctx):
        return {"source_provider": ctx.source_provider, "train_settings": ctx.train}

    # ---- phases ----------------------------------------------------------------------
    def training_phases(self):
        x, y = self._tensors(self.experience)
        classes = experience_classes(self.experience)
        if not isinstance(self.model, ClonedNetwork):
            yield from super().training_phases()
            target = as_block_net(self.model, x[:2])
            self.model = self.start_network(target, x, y, classes)
            self._report = {"step": 1, "position": None, "kept_fraction": None,
                            "parameters_added": 0,
                            "trainable_parameters": count_parameters(target)}
            return
        yield from self.clone_phases(x, y, classes, self.experience.current_experience + 1)

    def start_network(self, target: nn.Module, x, y, classes) -> ClonedNetwork:
        """The step-1 network: the trained target wrapped, frozen, with its router fitted."""
        net = ClonedNetwork(target, classes, self.hp["routing"],
                            self.hp["router_space"]).to(x.device)
        if self.hp["routing"] == "gaussian":
            net.base_router = fit_router(net, x, y, classes, self.hp["shrinkage"])
        return net

    def clone_phases(self, x: torch.Tensor, y: torch.Tensor, classes: Sequence[int],
                     step: int):
        """Localise, insert at the best position, fit the router; adds the module as ``step``
        and leaves the step's facts in ``self._report``. ``x``, ``y``: the step's data as
        tensors (for held-out scoring and the router); training phases draw their batches from
        the experience itself, so a dataset's transforms apply at every epoch."""
        net, hp = self.model, self.hp
        net.eval()
        source = self._source(self.experience)
        local = torch.zeros(int(max(classes)) + 1, dtype=torch.int64, device=x.device)
        local[torch.tensor(list(classes), device=x.device)] = torch.arange(len(classes),
                                                                          device=x.device)
        gates = ChannelGates(source, classes, hp["distill_temperature"], hp["sparsity"])
        yield Phase("gates", hp["gate_epochs"], self.experience_loader(),
                    torch.optim.Adam(gates.parameters(), lr=hp["gate_lr"]), forward=gates,
                    loss=gates.loss)
        masks = binarise(gates.values(), hp["gate_threshold"])

        def new_module(position):
            return CloneModule(source, masks, position, net.target.widths, classes,
                               net.target.spatial, hp["adapter_norm"]).to(x.device)

        perm = torch.randperm(len(y), generator=self.generator).to(x.device)
        n_val = int(round(len(y) * hp["val_fraction"]))
        train_idx, val_idx = perm[n_val:], perm[:n_val]
        held_out = val_idx if n_val else train_idx
        scores, best = {}, None
        for p in parse_positions(hp["positions"], len(net.target.blocks)):
            module = new_module(p)
            yield self.insert_phase(f"insert@{p}", module, local, train_idx)
            scores[p] = module_accuracy(module, net.target, x[held_out], local[y[held_out]])
            if best is None or scores[p] >= scores[best[0]]:
                best = (p, module)
        position, module = best
        if hp["refit"] and n_val:
            module = new_module(position)
            yield self.insert_phase("refit", module, local, None)
        module.eval()
        if hp["routing"] == "gaussian":
            module.router = fit_router(net, x, y, classes, hp["shrinkage"])
        net.add(step, module)
        self._report = {
            "step": step, "position": position,
            "position_scores": {str(k): v for k, v in scores.items()},
            "kept_fraction": float(torch.cat(masks).float().mean()),
            "parameters_added": count_parameters(module),
            "trainable_parameters": module.trainable_parameters() + sum(m.numel() for m in masks),
        }

    def insert_phase(self, name: str, module: CloneModule, local: torch.Tensor,
                     indices: Optional[torch.Tensor]) -> Phase:
        """Training of a clone module's adapter and head: cross-entropy on the step's classes
        (``local`` maps a class to its index in the step), on the samples at ``indices``
        (all when None)."""
        target = self.model.target

        def forward(xb):
            with torch.no_grad():
                feat = target.features(xb, module.position)
            return module(feat)

        module.train()
        params = [p for p in module.parameters() if p.requires_grad]
        return Phase(name, self.hp["insert_epochs"], self.experience_loader(indices),
                     self.settings.make_optimizer(params), forward=forward,
                     loss=lambda out, yb: F.cross_entropy(out, local[yb]))

    # ---- what the suite reads ------------------------------------------------------------
    def step_report(self) -> dict:
        report, self._report = self._report, {}
        return report

    def _tensors(self, experience):
        x, y = experience_tensors(experience)
        return x.to(self.device), y.to(self.device)

    def _source(self, experience) -> nn.Module:
        x, _ = self._tensors(experience)
        if self.source_provider is not None:
            return as_block_net(self.source_provider(experience).to(self.device).eval(), x[:2])
        expert = copy.deepcopy(self.target_model)
        expert.load_state_dict(self.initial_state)
        for p in expert.parameters():
            p.requires_grad_(True)
        x, y = self._tensors(experience)
        fit(expert, x, y, self.settings, self.generator, getattr(experience, "augment", None))
        for p in expert.parameters():
            p.requires_grad_(False)
        return as_block_net(expert, x[:2])
