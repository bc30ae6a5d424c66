"""PNC's ablations, run beside it so that its result can be attributed.

- ``pnc-router`` (an ablation): the Gaussian router's own classifier and nothing else (PNC's
  default router, ``routing = gaussian``, used as a classifier; with another router it is
  what stored class statistics alone achieve beside PNC): per step,
  class-conditional Gaussians with the step's pooled, shrunk covariance, fitted in the same
  space as PNC's router; a sample gets the class of highest density. No clone module, no target
  head: what the stored statistics alone achieve. With a space that reads the target's features
  (``target``, ``input+target``) it trains the target at step 1 as PNC does; with ``input`` it
  trains nothing.
- ``pnc-oracle`` (a reference, never a rival): PNC itself, evaluated with the true step of every
  test sample given: only that step's head predicts. How good the clones are when routing is
  perfect; the gap to ``pnc`` is what routing costs.

Both share PNC's options and seeds, so on the same seed they see the same data order and build
the same target and modules as ``pnc`` (the runner seeds every strategy of a seed alike).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from benchmark.core.models import as_block_net
from benchmark.core.options import Option
from strategies.base import FastTemplate, Phase, count_parameters
from strategies.mixture import place_scores
from strategies.pnc.negatives import BN_TYPES
from strategies.pnc.network import ClonedNetwork, boundary_features
from strategies.pnc.routers import GaussianRouter, GaussianStats, router_input
from strategies.pnc.routing_phases import synthesised_inputs
from strategies.pnc.strategy import OPTIONS, PNC, experience_classes, parse_positions
from strategies.registry import ALL_SCENARIOS, register_strategy


class GaussianClassifier(nn.Module):
    """Class scores from per-step Gaussians (``GaussianRouter.class_scores``) over all classes;
    a frozen target, when the space reads its features."""

    def __init__(self, num_classes: int, space: str, pool: int,
                 target: Optional[nn.Module] = None):
        super().__init__()
        self.num_classes = num_classes
        self.space = space
        self.pool = pool
        self.target = target
        self.routers = nn.ModuleList()
        self.step_classes: list[list[int]] = []

    def features(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        if "input" in self.space:
            parts.append(router_input(x, self.pool))
        if "target" in self.space:
            parts.append(self.target.pool(boundary_features(self.target, x)[-1]).flatten(1))
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x)
        out = torch.full((len(x), self.num_classes), float("-inf"), device=x.device)
        columns = [torch.as_tensor(c, device=x.device) for c in self.step_classes]
        return place_scores(out, columns, [r.class_scores(z) for r in self.routers])


@register_strategy("pnc-router", summary="ablation: PNC's Gaussian router alone (class "
                   "statistics per step, no clone, no target head)", family="cloning",
                   role="ablation", note="Gaussian router alone")
class PNCRouter(FastTemplate):
    """The router's own classifier (see the module docstring)."""

    SCENARIOS = ALL_SCENARIOS

    OPTIONS = tuple(o for o in OPTIONS if o.name in (
        "router_space", "router_pool", "inversion_samples", "inversion_steps",
        "inversion_bn_weight")) + (
        Option("shrinkage", float, 0.5, "covariance shrinkage towards a scaled identity",
               low=0.0, high=1.0),)

    def __init__(self, *, model: nn.Module, **kwargs):
        super().__init__(model=model, **kwargs)
        self.classifier: Optional[GaussianClassifier] = None
        self._target = model  # the network a pre-trained step's inputs are synthesised from
        self._trained = 0

    def training_phases(self):
        x, y = self.experience.x, self.experience.y
        x = x.to(self.device) if self.experience.decode is None else \
            self.experience.decode(x.to(self.device))
        y = y.to(self.device)
        self._trained = 0
        if self.classifier is None:
            target = None
            if "target" in self.hp["router_space"]:
                yield from super().training_phases()
                target = as_block_net(self.model, x[:2]).eval()
                self._trained = count_parameters(target)
                for p in target.parameters():
                    p.requires_grad_(False)
            num_classes = as_block_net(self.model, x[:2]).num_classes
            self.classifier = GaussianClassifier(num_classes, self.hp["router_space"],
                                                 self.hp["router_pool"], target)
            self.model = self.classifier.to(x.device)
        classes = experience_classes(self.experience)
        if not len(y):  # a pre-trained target without its data: inputs synthesised from it
            target = self._target.eval()
            layers = [m for m in target.modules() if isinstance(m, BN_TYPES)]
            x, y = yield from synthesised_inputs(self, "invert@base",
                                                 lambda xb: target(xb)[:, classes], layers,
                                                 classes, x.shape[1:])
        stats = GaussianStats(classes)

        def accumulate(xb):
            z = self.classifier.features(xb)
            stats.add(z, self.mb_y)
            return z

        yield Phase("router", 1, self.tensor_loader(x, y, shuffle=False, batch_size=512), None,
                    forward=accumulate)
        self.classifier.routers.append(GaussianRouter(stats, self.hp["shrinkage"]).to(x.device))
        self.classifier.step_classes.append(classes)

    def step_report(self) -> dict:
        return {"trainable_parameters": self._trained}


@register_strategy("pnc-oracle", summary="reference: PNC's modules given the true step of each "
                   "test sample (oracle routing), never a rival", family="cloning",
                   role="reference", note="oracle routing", uses_source=True, trained_as="pnc",
                   check=lambda hp, depth: parse_positions(hp["positions"], depth,
                                                           hp["allow_empty"]))
class PNCOracle(PNC):
    """PNC evaluated with the true step (see the module docstring)."""

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor, step: Optional[int] = None) -> torch.Tensor:
        return self.logits_of(self, x, step)

    @staticmethod
    @torch.no_grad()
    def logits_of(trained: PNC, x: torch.Tensor, step: Optional[int] = None) -> torch.Tensor:
        """The oracle's logits from a trained PNC: only the head of the true ``step`` (0-based)
        predicts; PNC's own output when the step is not given or no module exists yet."""
        net = trained.model
        if step is None or not isinstance(net, ClonedNetwork) or not len(net.clones):
            return PNC.predict_logits(trained, x)
        net.eval()
        _, logits, classes = net.step_logits(x)
        keys = [0] + [int(k) - 1 for k in net.clones]
        index = keys.index(step)
        out = torch.full((len(x), net.target.num_classes), float("-inf"), device=x.device,
                         dtype=logits[0].dtype)
        out[:, classes[index]] = logits[index]
        return out
