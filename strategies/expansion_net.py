"""The network of ``dynamic-expansion``: a frozen-able trunk, branches with one head each, and
class prototypes that route an input to a branch and measure how new a step's data are.

A *unit* is a (branch, class) pair: the branch's head has a row for the class, and the unit
keeps the mean mu_u of the class's trunk features over the samples it learnt from (globally
averaged for maps) and their mean squared distance s_u to it (the spread), with
d^2 = ||f(x) - mu_u||^2. A class
has one unit per branch that learnt it: one in class-incremental streams, several when a branch
is added for a new domain of known classes.

- Routing (``prototype``): log p(branch | x) is the log of the mass, summed over the branch's
  units, of a softmax over all units of -d^2 / (s_u tau).
- Output: per class, log sum over the branches knowing it of p(branch | x) softmax(head)[c]
  (``strategies.mixture.place_scores``); columns of classes not yet seen hold
  ``UNSEEN_LOGIT``.
- Gap: ``feature_gap`` is min over units of d^2 / s_u (about 1 for a known class's own data).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from strategies.mixture import place_scores

UNSEEN_LOGIT = -1e4


def pooled(f: torch.Tensor) -> torch.Tensor:
    """Features as vectors: spatial maps averaged over their spatial dimensions."""
    return f.flatten(2).mean(dim=2) if f.dim() > 2 else f


class ExpandingNet(nn.Module):
    """A trunk, branches with one head each, and unit prototypes (see the module docstring)."""

    def __init__(self, trunk: nn.Module, first_branch: nn.Module, feature_width: int,
                 branch_width: int, num_classes: int, routing: str = "prototype",
                 route_temperature: float = 1.0):
        super().__init__()
        self.trunk = trunk
        self.branches = nn.ModuleList([first_branch])
        self.heads = nn.ModuleList()
        self.head_classes: list[list[int]] = []
        self.branch_width = branch_width
        self.num_classes = num_classes
        self.routing = routing
        self.route_temperature = route_temperature
        self.register_buffer("prototypes", torch.zeros(0, feature_width))
        self.register_buffer("spread", torch.zeros(0))
        self.register_buffer("counts", torch.zeros(0))
        self.register_buffer("unit_class", torch.zeros(0, dtype=torch.long))
        self.register_buffer("unit_branch", torch.zeros(0, dtype=torch.long))

    @property
    def known(self) -> torch.Tensor:
        """The classes the model has learnt, in increasing order."""
        return torch.unique(self.unit_class)

    def _order(self) -> torch.Tensor:
        """The units sorted by (class, branch)."""
        key = self.unit_class * (len(self.branches) + 1) + self.unit_branch
        return torch.argsort(key)

    def set_head(self, branch: int, classes: list[int],
                 generator: Optional[torch.Generator] = None) -> nn.Linear:
        """A head for ``branch`` over ``classes``; rows of classes it already had are kept.

        New rows are drawn like ``nn.Linear``'s default (uniform in +-1/sqrt(fan_in)) from
        ``generator``; the global RNG is neither used nor disturbed."""
        with torch.random.fork_rng(devices=[]):
            head = nn.Linear(self.branch_width, len(classes))
        bound = 1 / self.branch_width ** 0.5
        with torch.no_grad():
            head.weight.uniform_(-bound, bound, generator=generator)
            head.bias.uniform_(-bound, bound, generator=generator)
        head = head.to(self.prototypes.device)
        if branch < len(self.heads):
            old = self.heads[branch]
            n_old = len(self.head_classes[branch])
            with torch.no_grad():
                head.weight[:n_old] = old.weight
                head.bias[:n_old] = old.bias
            self.heads[branch] = head
            self.head_classes[branch] = list(classes)
        else:
            self.heads.append(head)
            self.head_classes.append(list(classes))
        return head

    def trunk_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def branch_logits(self, h: torch.Tensor, branch: int) -> torch.Tensor:
        """Logits of ``branch``'s head (over its classes, in order) from trunk features ``h``."""
        return self.heads[branch](self.branches[branch](h))

    def _ratios(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(d^2 / s_u for every sample and unit, the units' order), units by (class, branch)."""
        order = self._order()
        d2 = torch.cdist(pooled(h), self.prototypes[order]).pow(2)
        return d2 / self.spread[order], order

    def log_routing(self, h: torch.Tensor) -> torch.Tensor:
        """log p(branch | x) from the distances of the trunk features to the units' means."""
        ratios, order = self._ratios(h)
        log_p = torch.log_softmax(-ratios / self.route_temperature, dim=1)
        owners = self.unit_branch[order]
        return torch.stack([torch.logsumexp(log_p[:, owners == b], dim=1)
                            for b in range(len(self.heads))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over all ``num_classes`` classes (``UNSEEN_LOGIT`` for unseen ones)."""
        h = self.trunk_features(x)
        return self.output(h, [self.branch_logits(h, b) for b in range(len(self.heads))])

    def output(self, h: torch.Tensor, logits: list[torch.Tensor]) -> torch.Tensor:
        """The output over all classes from trunk features ``h`` and each head's logits."""
        out = h.new_full((len(h), self.num_classes), UNSEEN_LOGIT)
        route = self.log_routing(h) if self.routing == "prototype" and len(self.heads) > 1 \
            else None
        scores = [z if route is None else torch.log_softmax(z, dim=1) + route[:, b:b + 1]
                  for b, z in enumerate(logits)]
        columns = [torch.as_tensor(c, device=out.device) for c in self.head_classes]
        return place_scores(out, columns, scores)

    @torch.no_grad()
    def feature_gap(self, x: torch.Tensor) -> torch.Tensor:
        """Per sample: min over units of d^2 / s_u."""
        return self._ratios(self.trunk_features(x))[0].min(dim=1).values

    @torch.no_grad()
    def add_prototypes(self, x: torch.Tensor, y: torch.Tensor, classes: list[int],
                       branch: int) -> None:
        """Units of ``branch`` for ``classes`` from the trunk features of their samples in
        ``x``; a unit that exists already merges its statistics with the new samples' (the
        exact pooled mean and spread)."""
        f = pooled(self.trunk_features(x))
        for c in classes:
            fc = f[y == c]
            if not len(fc):
                continue
            mu = fc.mean(dim=0)
            spread = (fc - mu).pow(2).sum(dim=1).mean().clamp_min(1e-6)
            found = ((self.unit_class == c) & (self.unit_branch == branch)).nonzero().flatten()
            if len(found):
                self._merge(int(found[0]), mu, spread, len(fc))
            else:
                self._append(c, branch, mu, spread, len(fc))

    def _append(self, c: int, branch: int, mu, spread, n: int) -> None:
        dev = self.prototypes.device
        self.prototypes = torch.cat([self.prototypes, mu.unsqueeze(0).to(dev)])
        self.spread = torch.cat([self.spread, spread.reshape(1).to(dev)])
        self.counts = torch.cat([self.counts, torch.tensor([float(n)], device=dev)])
        self.unit_class = torch.cat([self.unit_class, torch.tensor([c], device=dev)])
        self.unit_branch = torch.cat([self.unit_branch, torch.tensor([branch], device=dev)])

    def _merge(self, u: int, mu, spread, n: int) -> None:
        n_old = float(self.counts[u])
        total = n_old + n
        mean = (n_old * self.prototypes[u] + n * mu) / total
        self.spread[u] = (n_old * (self.spread[u] + (self.prototypes[u] - mean).pow(2).sum())
                          + n * (spread + (mu - mean).pow(2).sum())) / total
        self.prototypes[u] = mean
        self.counts[u] = total
