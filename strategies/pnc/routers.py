"""How PNC combines its modules: routers that score how much an input belongs to each step.

``GaussianRouter``: class-conditional Gaussians of one step with a shared, shrunk covariance
(LDA-style), fitted on the step's training data in a feature space common to all steps.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from strategies.pnc.network import ClonedNetwork, boundary_features


class GaussianRouter(nn.Module):
    """Class-conditional Gaussians of one step with a shared covariance (LDA-style).

    ``score(z)`` is log sum_c N(z; mu_c, Sigma), the step's log-likelihood of a mixture with one
    unit-weight component per class. Sigma = (1 - a) S + a (tr S / D) I + 1e-4 I with S the pooled
    within-class covariance and a the shrinkage.
    """

    def __init__(self, z: torch.Tensor, y: torch.Tensor, classes: Sequence[int], shrinkage: float):
        super().__init__()
        z = z.double()
        index = {int(c): i for i, c in enumerate(classes)}
        means = torch.stack([z[y == c].mean(0) for c in classes])
        centred = z - means[torch.tensor([index[int(c)] for c in y.tolist()], device=z.device)]
        d = z.shape[1]
        cov = centred.T @ centred / max(len(z) - len(classes), 1)
        eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
        cov = (1 - shrinkage) * cov + shrinkage * torch.trace(cov) / d * eye
        cov = cov + 1e-4 * eye
        chol = torch.linalg.cholesky(cov)
        self.register_buffer("means", means.float())
        self.register_buffer("precision", torch.cholesky_inverse(chol).float())
        self.register_buffer("log_norm", (-0.5 * (2 * torch.log(torch.diagonal(chol)).sum()
                                                  + d * math.log(2 * math.pi))).float())

    def score(self, z: torch.Tensor) -> torch.Tensor:
        diff = z.unsqueeze(1) - self.means.unsqueeze(0)                 # N x C x D
        maha = torch.einsum("ncd,de,nce->nc", diff, self.precision, diff)
        return torch.logsumexp(-0.5 * maha + self.log_norm, dim=1)


@torch.no_grad()
def fit_router(net: ClonedNetwork, x: torch.Tensor, y: torch.Tensor, classes: Sequence[int],
               shrinkage: float) -> GaussianRouter:
    """The Gaussian router of one step, fitted on that step's data in the network's router
    space."""
    feats = []
    for start in range(0, len(x), 512):
        xb = x[start:start + 512]
        feats.append(net.router_features(xb, boundary_features(net.target, xb)))
    return GaussianRouter(torch.cat(feats), y, classes, shrinkage).to(x.device)
