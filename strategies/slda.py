"""``slda``: Streaming Linear Discriminant Analysis (Hayes & Kanan 2020), Avalanche's
``StreamingLDA``.

Keeps: one mean per class (``muK``), the count of samples per class (``cK``), one covariance
shared by all classes (``Sigma``, updated sample by sample) and its shrunk pseudo-inverse
(``Lambda``), all inside the classifier module, so counted in ``model_bytes``; no samples
(``state_bytes`` = 0). On ``features = step1`` the frozen feature extractor is part of the
model too.

Fits: every training sample of every step, once, one at a time, in the order of the step's
shuffled pass (``StreamingLDA.fit``, the streaming update of the means and the covariance); no
gradient training (except the backbone on step 1 with ``features = step1``). Predicts
``x^T Lambda mu_k - mu_k^T Lambda mu_k / 2`` (``StreamingLDA.predict``), Lambda =
pinv((1 - shrinkage) Sigma + shrinkage I).

Feature space (``features``, see ``strategies.features``): ``auto`` is the flattened input for
MLP streams (e.g. split-digits: the 64 pixels) and the backbone's penultimate features after
training on step 1, frozen, otherwise (the issue's rule: pixels of 3 x 32 x 32 images make a
3072 x 3072 covariance updated per sample, and are far from one Gaussian per class).

Built from Avalanche: ``StreamingLDA.fit`` and ``StreamingLDA.predict`` themselves, on the
statistics held by ``StreamingLDAClassifier`` (a module, so the statistics move with the model
and are saved with it). Adapted for the fast template: the features come from the fit phase's
batches (``strategies.features``) instead of ``StreamingLDA``'s own training loop, which runs
the same per-sample ``fit`` on each mini-batch's features.

Defaults (Avalanche's and the paper's): ``shrinkage_param`` = 1e-4, ``streaming_update_sigma``
= true (plastic covariance).
"""
from __future__ import annotations

import torch
from avalanche.training import StreamingLDA
from torch import nn

from benchmark.core.options import Option
from strategies.features import FEATURES, ClassStatisticsTemplate
from strategies.registry import CLASS_INCREMENTAL, DOMAIN, MIXED, register_strategy


class StreamingLDAClassifier(nn.Module):
    """The statistics of Avalanche's ``StreamingLDA`` as module buffers, with its own ``fit``
    (one sample) and ``predict`` (scores for every class)."""

    fit = StreamingLDA.fit
    predict = StreamingLDA.predict

    def __init__(self, input_size: int, num_classes: int, shrinkage_param: float,
                 streaming_update_sigma: bool):
        super().__init__()
        self.input_size = input_size
        self.shrinkage_param = shrinkage_param
        self.streaming_update_sigma = streaming_update_sigma
        self.register_buffer("muK", torch.zeros((num_classes, input_size)))
        self.register_buffer("cK", torch.zeros(num_classes))
        self.register_buffer("Sigma", torch.ones((input_size, input_size)))
        self.register_buffer("Lambda", torch.zeros((input_size, input_size)))
        self.num_updates = 0
        self.prev_num_updates = -1

    @property
    def device(self) -> torch.device:
        return self.muK.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(x)


@register_strategy("slda", summary="Streaming LDA: class means and a shared covariance, no "
                   "samples (Avalanche StreamingLDA)", family="class-statistics")
class SLDA(ClassStatisticsTemplate):
    """Streaming LDA on the input (MLP streams) or on frozen step-1 features."""

    SCENARIOS = (CLASS_INCREMENTAL, DOMAIN, MIXED)

    OPTIONS = (
        FEATURES,
        Option("shrinkage_param", float, 1e-2, "shrinkage of the covariance towards identity",
               low=0.0, high=1.0),
        Option("streaming_update_sigma", bool, True,
               "update the shared covariance with every sample (false: keep it fixed)"),
    )

    def make_classifier(self, width: int) -> nn.Module:
        return StreamingLDAClassifier(width, self.num_classes, self.hp["shrinkage_param"],
                                      self.hp["streaming_update_sigma"])

    def absorb(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        lda = self.model.eval_classifier
        for f, y in zip(features, labels):
            lda.fit(f.unsqueeze(0), y.unsqueeze(0))
