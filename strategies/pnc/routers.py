"""How PNC combines its modules: routers that give p(step | x).

Every step keeps its own router (the target's in ``ClonedNetwork.base_router``, each module's in
``module.router``), fitted or trained at that step and never changed afterwards, so removing a
module removes its router and leaves the others bitwise as they were. ``route`` turns them into
log p(s | x) over the steps present:

- ``gaussian`` (keeps class statistics): a class-conditional Gaussian per step, one mean per
  class and a pooled, shrunk covariance, fitted on the step's training data in the routing space
  (``ClonedNetwork.router_features``); the step's score is the log-likelihood of its mixture, and
  p(s | x) the softmax of the scores over the steps.
- ``autoencoder`` (keeps no class statistics; Expert Gate, Aljundi et al. 2017): each step's
  router is an undercomplete autoencoder trained on the step's routing features; its score is
  -e(x) / (t e_s), with e(x) the input's reconstruction error, e_s the mean error on the step's
  own training data and t the temperature; p(s | x) the softmax of the scores.
- ``gate`` (keeps no class statistics): each module's router is a small network g_s trained at
  step s to tell the step's inputs (positives) from inputs synthesised for the earlier steps
  (negatives, ``strategies.pnc.negatives``). Routing is newest first:
  p(s | x) = sigmoid(g_s(x)) prod_{t > s} (1 - sigmoid(g_t(x))), the target's step taking what
  every gate declines. A later gate can take inputs from earlier steps, never move them between
  earlier steps.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def router_input(x: torch.Tensor, pool: int) -> torch.Tensor:
    """The input as a routing vector: flattened; image inputs average-pooled to ``pool`` x
    ``pool`` per channel first when larger (``pool`` 0: never)."""
    if pool and x.dim() == 4 and (x.shape[2] > pool or x.shape[3] > pool):
        x = F.adaptive_avg_pool2d(x, pool)
    return x.flatten(1)


class GaussianStats:
    """Streaming sufficient statistics of labelled vectors (float64): per-class counts and
    sums, and the total scatter sum z z^T, accumulated batch by batch."""

    def __init__(self, classes: Sequence[int]):
        self.classes = [int(c) for c in classes]
        self.count = self.sums = self.scatter = None

    def add(self, z: torch.Tensor, y: torch.Tensor) -> None:
        z = z.detach().double()
        if self.sums is None:
            self.count = torch.zeros(len(self.classes), dtype=torch.float64, device=z.device)
            self.sums = torch.zeros(len(self.classes), z.shape[1], dtype=torch.float64,
                                    device=z.device)
            self.scatter = torch.zeros(z.shape[1], z.shape[1], dtype=torch.float64,
                                       device=z.device)
        for i, c in enumerate(self.classes):
            zc = z[y == c]
            self.count[i] += len(zc)
            self.sums[i] += zc.sum(0)
        self.scatter += z.T @ z

    def means(self) -> torch.Tensor:
        return self.sums / self.count.clamp_min(1).unsqueeze(1)

    def pooled_covariance(self, shrinkage: float) -> torch.Tensor:
        """(1 - a) S + a (tr S / D) I + 1e-4 I, S the pooled within-class covariance."""
        means = self.means()
        within = self.scatter - (means.T * self.count) @ means
        d = within.shape[0]
        cov = within / max(float(self.count.sum()) - len(self.classes), 1.0)
        eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
        return (1 - shrinkage) * cov + shrinkage * torch.trace(cov) / d * eye + 1e-4 * eye


class GaussianRouter(nn.Module):
    """One step's class-conditional Gaussians with a shared covariance Sigma (LDA-style).

    ``class_scores(z)``: log N(z; mu_c, Sigma) per class of the step; ``score(z)``: their
    logsumexp, the log-likelihood of a mixture with one unit-weight component per class.
    Stored: the means and the whitening matrix W = L^-1 (Sigma = L L^T).
    """

    def __init__(self, stats: GaussianStats, shrinkage: float):
        super().__init__()
        cov = stats.pooled_covariance(shrinkage)
        chol = torch.linalg.cholesky(cov)
        whiten = torch.linalg.solve_triangular(chol, torch.eye(len(cov), dtype=cov.dtype,
                                                               device=cov.device), upper=False)
        d = cov.shape[0]
        self.register_buffer("means", stats.means().float())
        self.register_buffer("whiten", whiten.float())
        self.register_buffer("log_norm", (-0.5 * (2 * torch.log(torch.diagonal(chol)).sum()
                                                  + d * math.log(2 * math.pi))).float())

    def class_scores(self, z: torch.Tensor) -> torch.Tensor:
        w = z @ self.whiten.T
        m = self.means @ self.whiten.T
        maha = (w.unsqueeze(1) - m.unsqueeze(0)).pow(2).sum(-1)
        return -0.5 * maha + self.log_norm

    def score(self, z: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.class_scores(z), dim=1)


class StepGate(nn.Module):
    """One step's gate: a two-layer network on the routing features whose logit says "this
    input belongs to my step"."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)

    def score(self, z: torch.Tensor) -> torch.Tensor:
        return self(z)


class StepAutoencoder(nn.Module):
    """One step's autoencoder on routing features: D -> hidden (ReLU) -> D. ``scale`` (set after
    training: t e_s) turns its squared reconstruction error into a routing score."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.encode = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        self.decode = nn.Linear(hidden, dim)
        self.register_buffer("scale", torch.ones(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(z))

    def error(self, z: torch.Tensor) -> torch.Tensor:
        return (self(z) - z).pow(2).mean(1)

    def score(self, z: torch.Tensor) -> torch.Tensor:
        return -self.error(z) / self.scale


def route(net: nn.Module, x: torch.Tensor, feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """log p(s | x) over the steps of ``net`` (the target's first, then each module's)."""
    z = net.router_features(x, feats)
    modules = list(net.clones.values())
    if net.routing in ("gaussian", "autoencoder"):
        routers = [net.base_router] + [m.router for m in modules]
        return torch.log_softmax(torch.stack([r.score(z) for r in routers], dim=1), dim=1)
    if net.routing == "gate":
        log_p = torch.zeros(len(x), 1, device=x.device)
        for m in modules:
            g = m.router(z)
            log_p = torch.cat([log_p + F.logsigmoid(-g).unsqueeze(1),
                               F.logsigmoid(g).unsqueeze(1)], dim=1)
        return log_p
    raise ValueError(f"unknown routing {net.routing!r}")
