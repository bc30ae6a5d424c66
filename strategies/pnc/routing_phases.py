"""Training PNC's routers, as phases of the template's loop.

``RouterTraining(strategy, x, y, classes)`` holds one step's data; ``base_phases()`` (step 1)
and ``module_phases(module)`` (later steps) are generators of phases whose return value is the
step's router (or None for ``routing=none``, and for the target under ``gate`` routing, which
takes what every gate declines). ``report`` collects what the record keeps about the router.

A target that arrives trained with none of its data (the ``cloning`` scenario's first step)
gets a router fitted on inputs synthesised from it by model inversion (``synthesised_inputs``:
``inversion_samples`` per class, labelled with the class they were optimised for), the only
inputs of its classes the protocol allows. This choice is ours.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from strategies.base import Phase, module_bytes
from strategies.pnc.negatives import (
    BatchNormPrior,
    InversionBatch,
    inversion_loss,
    inversion_start,
    mixed_negatives,
    step_classifier,
)
from strategies.pnc.routers import GaussianRouter, GaussianStats, StepAutoencoder, StepGate

INVERSION_LR = 0.05
INVERSION_L2 = 1e-3
FEATURE_BATCH = 512


class RouterTraining:
    """The router of one step (see the module docstring)."""

    def __init__(self, strategy, x: torch.Tensor, y: torch.Tensor, classes):
        self.strategy = strategy
        self.hp = strategy.hp
        self.x, self.y, self.classes = x, y, list(classes)
        self.report: dict = {}

    def base_phases(self):
        if len(self.y) == 0 and self.hp["routing"] in ("gaussian", "autoencoder"):
            logits, layers = step_classifier(self.strategy.model, 0)
            self.x, self.y = yield from synthesised_inputs(self.strategy, "invert@base", logits,
                                                          layers, self.classes, self.x.shape[1:])
        if self.hp["routing"] == "gaussian":
            return (yield from self.gaussian_phases())
        if self.hp["routing"] == "autoencoder":
            return (yield from self.autoencoder_phases())
        return None

    def module_phases(self, module: nn.Module):
        routing = self.hp["routing"]
        if routing == "gaussian":
            return (yield from self.gaussian_phases())
        if routing == "gate":
            return (yield from self.gate_phases(module))
        if routing == "autoencoder":
            return (yield from self.autoencoder_phases())
        return None

    # ---- autoencoder (Expert Gate) -------------------------------------------------------
    def autoencoder_phases(self):
        """The step's autoencoder trained on its routing features (mean squared error), then
        its score scale: the temperature times its mean error on the step's data."""
        z = self._features(self.x)
        auto = StepAutoencoder(z.shape[1], self.hp["router_hidden"]).to(z.device)
        yield Phase("router", self.hp["router_epochs"], self.strategy.tensor_loader(z, self.y),
                    self.strategy.settings.make_optimizer(auto.parameters()), forward=auto,
                    loss=lambda out, _: (out - self.strategy.mb_x).pow(2).mean())
        auto.eval()
        with torch.no_grad():
            auto.scale.fill_(float(auto.error(z).mean()) * self.hp["router_temperature"])
        self.report = {"router": "autoencoder", "router_error": float(auto.scale),
                       "router_bytes": module_bytes(auto)}
        return auto

    # ---- gaussian ------------------------------------------------------------------------
    def gaussian_phases(self):
        """One forward-only pass over the step's data accumulating its class statistics."""
        strategy, stats = self.strategy, GaussianStats(self.classes)

        def accumulate(xb):
            z = strategy.router_features(xb)
            stats.add(z, strategy.mb_y)
            return z

        loader = strategy.tensor_loader(self.x, self.y, shuffle=False,
                                        batch_size=FEATURE_BATCH)
        yield Phase("router", 1, loader, None, forward=accumulate)
        router = GaussianRouter(stats, self.hp["shrinkage"]).to(self.x.device)
        self.report = {"router": "gaussian",
                       "router_bytes": module_bytes(router)}
        return router

    # ---- gate ----------------------------------------------------------------------------
    def gate_phases(self, module: nn.Module):
        """Negatives (synthesised), positives (the step's data, plus inputs synthesised from
        the new module under inversion), then the gate's training."""
        net = self.strategy.model
        positives = [self.x]
        if self.hp["negatives"] == "inversion":
            negatives = []
            for s in range(len(net.clones) + 1):
                logits, layers = step_classifier(net, s)
                negatives.append((yield from self.inversion(f"invert@{s + 1}", logits, layers,
                                                            self._step_size(net, s))))
            logits, layers = module_classifier(net, module)
            positives.append((yield from self.inversion("invert@new", logits, layers,
                                                        len(self.classes))))
            negatives = torch.cat(negatives)
        else:
            negatives = mixed_negatives(self.x, len(self.x), self.strategy.generator)
        z_pos = torch.cat([self._features(p) for p in positives])
        z_neg = self._features(negatives)
        z = torch.cat([z_pos, z_neg])
        labels = torch.cat([torch.ones(len(z_pos)), torch.zeros(len(z_neg))]).to(z.device)
        gate = StepGate(z.shape[1], self.hp["router_hidden"]).to(z.device)
        pos_weight = torch.tensor(len(z_neg) / max(len(z_pos), 1), device=z.device)
        loader = self.strategy.tensor_loader(z, labels)
        yield Phase("router", self.hp["router_epochs"], loader,
                    self.strategy.settings.make_optimizer(gate.parameters()), forward=gate,
                    loss=lambda out, yb: F.binary_cross_entropy_with_logits(
                        out, yb, pos_weight=pos_weight))
        gate.eval()
        with torch.no_grad():
            taken_pos = float((gate(z_pos) > 0).float().mean())
            taken_neg = float((gate(z_neg) > 0).float().mean())
        self.report = {"router": "gate", "negatives": self.hp["negatives"],
                       "router_positives": len(z_pos), "router_negatives": len(z_neg),
                       "gate_accepts_positives": taken_pos,
                       "gate_accepts_negatives": taken_neg,
                       "router_bytes": module_bytes(gate)}
        return gate

    @staticmethod
    def _step_size(net, s: int) -> int:
        return len(net.base_classes) if s == 0 else len(list(net.clones.values())[s - 1].classes)

    def inversion(self, name: str, logits, layers, n_classes: int):
        """Inputs synthesised for a classifier's classes (a phase; returns them detached)."""
        x, _ = yield from synthesised_inputs(self.strategy, name, logits, layers,
                                             range(n_classes), self.x.shape[1:])
        return x

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.strategy.router_features(x[i:i + FEATURE_BATCH])
                          for i in range(0, len(x), FEATURE_BATCH)])


def synthesised_inputs(strategy, name: str, logits, layers, classes, input_shape):
    """Phase generator: ``inversion_samples`` inputs per class of ``classes`` optimised so that
    ``logits`` (a classifier over those classes, in that order) gives them their class, under
    the BatchNorm prior of ``layers`` (``strategy.hp``'s inversion options); returns (inputs,
    their classes), detached."""
    hp, classes = strategy.hp, list(classes)
    x, y = inversion_start(hp["inversion_samples"], len(classes), input_shape,
                           strategy.generator, strategy.device)
    prior = BatchNormPrior(layers)
    try:
        yield Phase(name, hp["inversion_steps"], InversionBatch(x, y),
                    torch.optim.Adam([x], lr=INVERSION_LR), forward=logits,
                    loss=lambda out, yb: inversion_loss(out, yb, prior, x,
                                                        hp["inversion_bn_weight"], INVERSION_L2))
    finally:
        prior.close()
    return x.detach(), torch.as_tensor(classes, device=y.device)[y]


def module_classifier(net: nn.Module, module: nn.Module):
    """(logits of a module not yet in ``net`` as a function of the input, its BatchNorm
    layers)."""
    target = net.target

    def logits(x):
        return module(target.features(x, module.position))
    layers = [m for m in module.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    return logits, layers
