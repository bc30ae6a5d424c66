"""``fecam``: FeCAM (Goswami et al., NeurIPS 2023), Avalanche's ``FeCAMClassifier``:
per-class Gaussian prototypes on frozen features, exemplar-free.

The closest published relative of PNC's Gaussian router: both keep one Gaussian per class on a
network frozen after step 1 and score a sample by its Mahalanobis distance to each class. FeCAM
classifies with these distances directly; PNC's router only decides which step's module
answers, and the module (trained on the step's data, from its source) gives the class.

Keeps: per class seen, the mean of its Tukey-transformed features and the shrunk, normalised
covariance of them, inside the classifier (``class_means``, ``class_covs``, counted in
``model_bytes``), plus the frozen feature extractor; no samples (``state_bytes`` = 0).

Fits: step 1 trains the backbone with cross-entropy (like ``finetune``), then freezes it and
discards its head. After each step's fit pass: Tukey's ladder transform of the features
(x^``tukey1``), per-class mean and covariance, covariance shrinkage (``shrink1`` on the
diagonal, ``shrink2`` off it, applied twice, as Avalanche does) and normalisation to a
correlation matrix (``covnorm``). Predicts minus the squared Mahalanobis distance between the
L2-normalised transformed feature and each class mean.

Feature space: always the frozen step-1 features (FeCAM's definition; the Tukey transform
needs non-negative features, which the backbones' ReLU outputs are, not normalised pixels).

Built from Avalanche: ``FeCAMClassifier`` (transforms, shrinkage, normalisation, the class
means and covariances, prediction) and ``_gather_means_and_cov`` from its ``update_fecam``
plugins (as ``CurrentDataFeCAMUpdate`` runs it after each experience), on the features the fit
phase computed (an identity feature extractor over them) instead of a second ``DataLoader``
pass. Avalanche's classifier returns its scores on the CPU; they are moved to the input's
device.

Defaults (Avalanche's, which are the paper's): ``tukey`` true with ``tukey1`` = 0.5,
``shrinkage`` true with ``shrink1`` = ``shrink2`` = 1, ``covnorm`` true.
"""
from __future__ import annotations

import warnings

import torch
from avalanche.models import FeCAMClassifier, TrainEvalModel
from avalanche.training.plugins.update_fecam import _gather_means_and_cov
from torch import nn

from benchmark.core.options import Option
from strategies.features import ClassStatisticsTemplate
from strategies.registry import CLASS_INCREMENTAL, DOMAIN, MIXED, register_strategy


@register_strategy("fecam", summary="FeCAM: per-class Gaussians (Mahalanobis) on frozen "
                   "step-1 features, no samples (Avalanche FeCAMClassifier)",
                   family="class-statistics")
class FeCAM(ClassStatisticsTemplate):
    """Per-class means and covariances of frozen step-1 features, Mahalanobis scores."""

    SCENARIOS = (CLASS_INCREMENTAL, DOMAIN, MIXED)

    OPTIONS = (
        Option("tukey", bool, True, "apply Tukey's ladder transform x^tukey1 to features"),
        Option("tukey1", float, 0.5, "power of the Tukey transform (0: log)", low=0.0),
        Option("shrinkage", bool, True, "shrink each class covariance"),
        Option("shrink1", float, 0.5, "shrinkage towards the mean variance (diagonal)",
               low=0.0),
        Option("shrink2", float, 1.0, "shrinkage towards the mean covariance (off-diagonal)",
               low=0.0),
        Option("covnorm", bool, True, "normalise each covariance to a correlation matrix"),
    )

    def make_classifier(self, width: int) -> nn.Module:
        return FeCAMClassifier(**{k: self.hp[k] for k in (
            "tukey", "shrinkage", "shrink1", "shrink2", "tukey1", "covnorm")})

    def finish_fit(self) -> None:
        fecam = self.model.eval_classifier
        identity = TrainEvalModel(nn.Identity(), nn.Identity(), fecam)
        with warnings.catch_warnings():  # the Tukey transform copies a tensor with torch.tensor
            warnings.simplefilter("ignore", UserWarning)
            means, covs = _gather_means_and_cov(identity, self.fitted_features(),
                                                self.eval_mb_size, self.device)
        fecam.update_class_means_dict(means)
        fecam.update_class_cov_dict(covs)

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor, step=None) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return super().predict_logits(x, step)
