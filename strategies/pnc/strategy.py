"""``pnc``: Partial Network Cloning as an Avalanche strategy.

Moves the ability to recognise a step's classes from a *source* network into the *target*
network without changing one parameter or buffer of the target; each step's clone is a separate
module that ``remove(step)`` deletes, after which the target's outputs are exactly the original
ones. The authors' code was never released and only the paper's abstract, introduction and two
figure captions are known to us (its method section, inference rule and locality formula are
not): what they state (a part of a source located, cloned and inserted with the weights fixed,
removable) is kept, and everything else is the suite's design (docs/design.md, "PNC"), every
choice an option. Step 1 trains the target (or, in the ``cloning`` scenario, takes it
pre-trained), then freezes it. Each later step, as phases of the template's loop (plugins see
them):

1. ``localise``: channel gates on the source's block outputs learn to keep the source's
   predictions on the step's classes under an L1 penalty; binarised at ``keep_threshold``.
2. ``insert@p`` for each candidate position p: a clone module (adapter, the source's blocks
   after p pruned to the kept channels, a new head) trains its adapter and head on a
   (1 - ``val_fraction``) split; the best held-out accuracy wins, then the lower held-out loss,
   then fewer added parameters (the record says which decided; ``position_tolerance`` and
   ``max_module_bytes`` make the choice size-aware). Positions that clone no block are
   candidates only with ``allow_empty``. ``refit`` trains the winner again on all the data.
3. the step's router (``routing``): ``gaussian`` statistics, or a ``gate`` trained against
   synthesised negatives (``negatives``: ``inversion`` or ``mixing``).

Usable from one's own Avalanche code: ``PNC(model=..., optimizer=..., source_provider=fn)`` with
``fn(experience)`` returning the step's source; without a provider PNC trains an expert itself on
each experience from the model's initial weights. The model may be a ``BlockNet``, an
``nn.Sequential`` whose last child is the linear head, or any model with ``blocks`` and ``head``.
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
from strategies.base import FastTemplate, Phase, count_parameters, module_bytes
from strategies.pnc.localise import ChannelGates, binarise
from strategies.pnc.network import ClonedNetwork, CloneModule, boundary_features
from strategies.pnc.routing_phases import RouterTraining
from strategies.registry import ALL_SCENARIOS, register_strategy

ROUTINGS = ("gaussian", "autoencoder", "gate", "none")
ROUTER_SPACES = ("input", "target", "input+target")


def experience_classes(experience) -> list[int]:
    """The experience's classes (Avalanche's attribute, else the labels found in its data)."""
    classes = getattr(experience, "classes_in_this_experience", None)
    if classes is None:
        classes = sorted(set(experience_tensors(experience)[1].tolist()))
    return [int(c) for c in classes]


def parse_positions(text: str, depth: int, allow_empty: bool = False) -> list[int]:
    """Candidate positions from ``auto`` (0..depth-1, or 0..depth with ``allow_empty``) or
    ``"0,2"``; UsageError if out of range (depth, cloning nothing, needs ``allow_empty``)."""
    last = depth if allow_empty else depth - 1
    if text == "auto":
        return list(range(last + 1))
    try:
        positions = sorted({int(p) for p in text.split(",")})
    except ValueError:
        raise UsageError(f"bad PNC positions {text!r}: use auto or indices like 0,1") from None
    if not positions or positions[0] < 0 or positions[-1] > last:
        extra = "" if allow_empty else f" ({depth} clones no block: set allow_empty)"
        raise UsageError(f"bad PNC positions {text!r}: indices must lie in 0..{last}{extra}")
    return positions


@torch.no_grad()
def module_score(module: CloneModule, target: nn.Module, x: torch.Tensor,
                 y_local: torch.Tensor, batch_size: int = 512) -> dict:
    """Held-out accuracy and mean cross-entropy of a clone module alone on its classes."""
    module.eval()
    correct, loss = 0, 0.0
    for start in range(0, len(x), batch_size):
        out = module(target.features(x[start:start + batch_size], module.position))
        yb = y_local[start:start + batch_size]
        correct += int((out.argmax(1) == yb).sum())
        loss += float(F.cross_entropy(out, yb, reduction="sum"))
    n = max(len(x), 1)
    return {"accuracy": correct / n, "loss": loss / n}


def best_position(scores: dict, parameters: dict, tolerance: float = 0.0,
                  max_bytes: Optional[int] = None, sizes: Optional[dict] = None
                  ) -> tuple[int, str]:
    """The winning position and what decided. Default (``tolerance`` 0, no ``max_bytes``):
    higher held-out accuracy, then lower loss, then fewer added parameters. With ``max_bytes``,
    candidates whose module exceeds it (``sizes``: bytes per position) are left out unless none
    fits (then the smallest wins); with ``tolerance`` > 0, the candidate with the fewest added
    parameters among those within ``tolerance`` of the best held-out accuracy wins (a
    size-aware choice)."""
    pool = list(scores)
    budget_note = ""
    if max_bytes is not None and sizes is not None:
        fits = [p for p in pool if sizes[p] <= max_bytes]
        if not fits:
            smallest = min(pool, key=lambda p: (sizes[p], p))
            return smallest, f"smallest module (none fits {max_bytes:,} bytes)"
        if len(fits) < len(pool):
            budget_note = f" within {max_bytes:,} bytes"
        pool = fits
    if tolerance > 0 and len(pool) > 1:
        best_accuracy = max(scores[p]["accuracy"] for p in pool)
        near = [p for p in pool if scores[p]["accuracy"] >= best_accuracy - tolerance]
        chosen = min(near, key=lambda p: (parameters[p], -scores[p]["accuracy"], p))
        return chosen, (f"fewest added parameters within {tolerance:g} of the best held-out "
                        f"accuracy{budget_note}")
    ranked = sorted(pool, key=lambda p: (-scores[p]["accuracy"], scores[p]["loss"],
                                         parameters[p]))
    best = ranked[0]
    if len(ranked) == 1:
        return best, f"only candidate{budget_note}"
    second = ranked[1]
    if scores[best]["accuracy"] != scores[second]["accuracy"]:
        return best, f"held-out accuracy{budget_note}"
    if scores[best]["loss"] != scores[second]["loss"]:
        return best, f"held-out loss (accuracy tied){budget_note}"
    return best, f"fewer added parameters (accuracy and loss tied){budget_note}"


OPTIONS = (
    Option("routing", str, "gaussian", "how the steps' outputs are combined: class-statistics "
           "Gaussians, statistics-free autoencoders (Expert Gate) or gates against synthesised "
           "negatives, or none (raw logits, an ablation)", choices=ROUTINGS),
    Option("router_space", str, "input", "features the routers read", choices=ROUTER_SPACES),
    Option("router_pool", int, 7, "image inputs are average-pooled to this many pixels per "
           "side (per channel) in the routing space; 0 = not pooled", low=0),
    Option("shrinkage", float, 0.1, "gaussian: covariance shrinkage towards a scaled identity",
           low=0.0, high=1.0),
    Option("negatives", str, "inversion", "gate: negatives synthesised by model inversion of "
           "the earlier steps, or by patch mixing of the step's data",
           choices=("inversion", "mixing")),
    Option("router_hidden", int, 64, "gate, autoencoder: hidden units of each step's router",
           low=1),
    Option("router_epochs", int, 10, "gate, autoencoder: epochs of router training", low=1),
    Option("router_temperature", float, 0.5, "autoencoder: temperature t of the scores "
           "-error / (t x the step's mean error)", low=1e-3),
    Option("inversion_samples", int, 32, "gate, inversion: synthesised inputs per class",
           low=1),
    Option("inversion_steps", int, 100, "gate, inversion: optimisation steps", low=1),
    Option("inversion_bn_weight", float, 1.0, "gate, inversion: weight of the BatchNorm prior",
           low=0.0),
    Option("positions", str, "auto", "candidate insertion positions: auto (every block "
           "boundary that clones at least one block) or comma-separated indices, 0 = input"),
    Option("allow_empty", bool, False, "also try the last boundary, where the module clones "
           "no source block (an adapter and a head on the target)"),
    Option("localise_epochs", int, 0, "epochs of channel-gate training (localisation); 0 = "
           "the experiment's epochs", low=0),
    Option("localise_lr", float, 0.05, "learning rate of the channel gates (Adam)", low=0.0),
    Option("sparsity", float, 0.5, "weight of the L1 penalty on the channel gates", low=0.0),
    Option("keep_threshold", float, 0.5, "channels whose gate exceeds it are cloned", low=0.0,
           high=1.0),
    Option("distill_temperature", float, 2.0, "temperature of the localisation distillation",
           low=1e-3),
    Option("insert_epochs", int, 0, "epochs of adapter and head training; 0 = the "
           "experiment's epochs", low=0),
    Option("val_fraction", float, 0.2, "share of the step's data held out to choose the "
           "position", low=0.0, high=0.9),
    Option("refit", bool, True, "train the chosen module again on all the step's data"),
    Option("position_tolerance", float, 0.0, "size-aware position choice: the fewest added "
           "parameters among the candidates within this much held-out accuracy of the best "
           "(0: the best accuracy, then loss, then size)", low=0.0, high=1.0),
    Option("max_module_bytes", int, None, "leave out candidate positions whose module "
           "(adapter, pruned blocks, head) exceeds this many bytes, unless none fits", low=1,
           nullable=True),
    Option("adapter_norm", bool, False, "add a normalisation layer after the adapter"),
)


@register_strategy("pnc", summary="Partial Network Cloning: frozen target + removable pruned "
                   "clones of source parts, routed", family="cloning", uses_source=True,
                   check=lambda hp, depth: parse_positions(hp["positions"], depth,
                                                           hp["allow_empty"]))
class PNC(FastTemplate):
    """Partial Network Cloning as an Avalanche strategy (see the module docstring)."""

    SCENARIOS = ALL_SCENARIOS

    OPTIONS = OPTIONS

    def __init__(self, *, model: nn.Module, source_provider: Optional[Callable] = None,
                 train_settings: Optional[TrainSettings] = None, **kwargs):
        super().__init__(model=model, **kwargs)
        self.source_provider = source_provider
        self.settings = train_settings or TrainSettings(
            epochs=self.train_epochs, batch_size=self.train_mb_size,
            lr=self.optimizer.param_groups[0]["lr"])
        self.hp["insert_epochs"] = self.hp["insert_epochs"] or self.train_epochs
        self.hp["localise_epochs"] = self.hp["localise_epochs"] or self.train_epochs
        self.target_model = model
        self.initial_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if hasattr(model, "blocks"):
            parse_positions(self.hp["positions"], len(model.blocks), self.hp["allow_empty"])
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
            self.model = ClonedNetwork(target, classes, self.hp["routing"],
                                       self.hp["router_space"],
                                       self.hp["router_pool"]).to(x.device)
            router = RouterTraining(self, x, y, classes)
            self.model.base_router = yield from router.base_phases()
            pretrained = getattr(self.experience, "pretrained", False)
            self._report = {"step": 1, "position": None, "cloned_blocks": 0,
                            "parameters_added": 0,
                            "trainable_parameters": 0 if pretrained else count_parameters(target)}
            if pretrained:
                self._report["router_inputs"] = "data" if len(y) else "synthesised"
            return
        yield from self.clone_phases(x, y, classes, self.experience.current_experience + 1)

    def clone_phases(self, x: torch.Tensor, y: torch.Tensor, classes: Sequence[int],
                     step: int):
        """Localise, insert at the best position, train the router; adds the module as
        ``step`` and leaves the step's facts in ``self._report``. ``x``, ``y``: the step's data
        (held-out scoring, routers); training phases draw batches from the experience itself,
        so a dataset's transforms apply at every epoch."""
        net, hp = self.model, self.hp
        net.eval()
        source = self._source(self.experience, x, y)
        local = torch.zeros(int(max(classes)) + 1, dtype=torch.int64, device=x.device)
        local[torch.tensor(list(classes), device=x.device)] = torch.arange(len(classes),
                                                                          device=x.device)
        gates = ChannelGates(source, classes, hp["distill_temperature"], hp["sparsity"])
        yield Phase("localise", hp["localise_epochs"], self.experience_loader(),
                    torch.optim.Adam(gates.parameters(), lr=hp["localise_lr"]), forward=gates,
                    loss=gates.loss)
        masks = binarise(gates.values(), hp["keep_threshold"])

        def new_module(position):
            return CloneModule(source, masks, position, net.target.widths[position], classes,
                               net.target.spatial, hp["adapter_norm"]).to(x.device)

        perm = torch.randperm(len(y), generator=self.generator).to(x.device)
        n_val = int(round(len(y) * hp["val_fraction"]))
        train_idx, val_idx = perm[n_val:], perm[:n_val]
        held_out = val_idx if n_val else train_idx
        scores, sizes, nbytes, modules = {}, {}, {}, {}
        for p in parse_positions(hp["positions"], len(net.target.blocks), hp["allow_empty"]):
            modules[p] = new_module(p)
            yield self.insert_phase(f"insert@{p}", modules[p], local, train_idx)
            scores[p] = module_score(modules[p], net.target, x[held_out], local[y[held_out]])
            sizes[p] = count_parameters(modules[p])
            nbytes[p] = module_bytes(modules[p])
        position, reason = best_position(scores, sizes, hp["position_tolerance"],
                                         hp["max_module_bytes"], nbytes)
        module = modules[position]
        if hp["refit"] and n_val:
            module = new_module(position)
            yield self.insert_phase("refit", module, local, None)
        module.eval()
        clone_bytes = module_bytes(module)
        router = RouterTraining(self, x, y, classes)
        module.router = yield from router.module_phases(module)
        net.add(step, module)
        cloned_masks = masks[position:]
        self._report = {
            "step": step, "position": position, "position_reason": reason,
            "position_scores": {str(k): v for k, v in scores.items()},
            "position_bytes": {str(k): v for k, v in nbytes.items()},
            "cloned_blocks": module.cloned_blocks, "pruned": module.pruned,
            "kept_fraction": float(torch.cat(masks).float().mean()),
            "kept_fraction_per_block": [float(m.float().mean()) for m in masks],
            "kept_fraction_cloned": float(torch.cat(cloned_masks).float().mean())
            if cloned_masks else None,
            "parameters_copied": module.copied_parameters(),
            "parameters_added": count_parameters(module),
            "module_bytes": clone_bytes,
            "trainable_parameters": module.trainable_parameters() + sum(m.numel() for m in masks),
            **router.report,
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

    def router_features(self, x: torch.Tensor) -> torch.Tensor:
        """The routing features of model inputs ``x`` (the network's shared space)."""
        return self.model.router_features(x, boundary_features(self.model.target, x))

    def _tensors(self, experience):
        x, y = experience_tensors(experience)
        return x.to(self.device), y.to(self.device)

    def _source(self, experience, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
        """The step's source: the provider's, else an expert trained here on ``x``, ``y`` (the
        step's data, already on the device) from the target's initial weights."""
        if self.source_provider is not None:
            return as_block_net(self.source_provider(experience).to(self.device).eval(), x[:2])
        expert = copy.deepcopy(self.target_model)
        expert.load_state_dict(self.initial_state)
        for p in expert.parameters():
            p.requires_grad_(True)
        fit(expert, x, y, self.settings, self.generator, getattr(experience, "augment", None))
        for p in expert.parameters():
            p.requires_grad_(False)
        return as_block_net(expert, x[:2])
