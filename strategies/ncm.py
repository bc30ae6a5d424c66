"""``ncm``: nearest class mean (Mensink et al. 2013), Avalanche's ``NCMClassifier``.

Keeps: one mean feature vector per class seen, inside the classifier (``class_means``, counted
in ``model_bytes``); no samples (``state_bytes`` = 0). On ``features = step1`` the frozen
feature extractor is part of the model too.

Fits: after each step's fit pass, the mean of the step's features per class, each feature
L2-normalised first and the mean normalised again when ``normalize`` (Avalanche's
``compute_class_means``), given to ``NCMClassifier.update_class_means_dict`` (as Avalanche's
``CurrentDataNCMUpdate`` does after each experience). A class seen in one step only, as in
class-incremental streams, gets exactly its step's mean. Predicts minus the Euclidean distance
from the (normalised) feature to each class mean.

Feature space (``features``, see ``strategies.features``): ``auto`` is the flattened input for
MLP streams and the backbone's penultimate features, trained on step 1 and frozen, otherwise
(as ``slda``, so the two compare on the same features).

Built from Avalanche: ``NCMClassifier`` (prediction, the class-means update) and
``compute_class_means`` from its ``update_ncm`` plugins, run on the features the fit phase
computed (an identity feature extractor over them) instead of a second pass of a
``DataLoader`` over the experience's dataset.

Defaults: ``normalize`` = true (Avalanche's default and iCaRL's nearest-mean-of-exemplars rule,
Rebuffi et al. 2017).
"""
from __future__ import annotations

from avalanche.models import NCMClassifier, TrainEvalModel
from avalanche.training.plugins.update_ncm import compute_class_means
from torch import nn

from benchmark.core.options import Option
from strategies.features import FEATURES, ClassStatisticsTemplate
from strategies.registry import CLASS_INCREMENTAL, DOMAIN, MIXED, register_strategy


@register_strategy("ncm", summary="nearest class mean, no samples (Avalanche NCMClassifier)",
                   family="class-statistics")
class NCM(ClassStatisticsTemplate):
    """Nearest class mean on the input (MLP streams) or on frozen step-1 features."""

    SCENARIOS = (CLASS_INCREMENTAL, DOMAIN, MIXED)

    OPTIONS = (
        FEATURES,
        Option("normalize", bool, True,
               "L2-normalise features (and class means) before measuring distances"),
    )

    def make_classifier(self, width: int) -> nn.Module:
        return NCMClassifier(normalize=self.hp["normalize"])

    def finish_fit(self) -> None:
        ncm = self.model.eval_classifier
        identity = TrainEvalModel(nn.Identity(), nn.Identity(), nn.Identity())
        means = compute_class_means(identity, self.fitted_features(), self.eval_mb_size,
                                    ncm.normalize, self.device)
        ncm.update_class_means_dict(means)
