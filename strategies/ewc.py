"""``ewc``: Elastic Weight Consolidation (Kirkpatrick et al. 2017) through Avalanche's
``EWCPlugin``.

The penalty is ewc_lambda * sum_i F_i (theta_i - theta*_i)^2 over the importances F (squared
mini-batch gradients, Avalanche's estimate) saved after each experience. ``FastEWCPlugin``
computes the same importances from the experience's tensors instead of a ``DataLoader``. The
Fisher diagonals and the anchor weights it keeps are the strategy's state (``state_bytes``).
"""
from avalanche.training.plugins import EWCPlugin
from avalanche.training.utils import zerolike_params_dict

from benchmark.core.options import Option
from benchmark.core.tensors import TensorLoader, experience_tensors
from strategies.base import FastTemplate
from strategies.registry import ALL_SCENARIOS, register_strategy


class FastEWCPlugin(EWCPlugin):
    """``EWCPlugin`` whose importances are computed on the experience's tensors (same estimate:
    squared mini-batch gradients averaged over the mini-batches, model in eval mode)."""

    def after_training_exp(self, strategy, **kwargs):
        self._experience = strategy.experience
        super().after_training_exp(strategy, **kwargs)

    def compute_importances(self, model, criterion, optimizer, dataset, device, batch_size,
                            num_workers=0):
        model.eval()
        importances = zerolike_params_dict(model)
        x, y = experience_tensors(self._experience)
        loader = TensorLoader(x.to(device), y.to(device), batch_size, shuffle=False)
        for xb, yb, _ in loader:
            optimizer.zero_grad()
            criterion(model(xb), yb).backward()
            for (_, p), imp in zip(model.named_parameters(), importances.values()):
                if p.grad is not None:
                    imp.data += p.grad.data.pow(2)
        for imp in importances.values():  # no data (a pre-trained target's): no importance
            imp.data /= float(max(len(loader), 1))
        model.train()
        return importances


@register_strategy("ewc", summary="Elastic Weight Consolidation (Avalanche EWCPlugin)",
                   family="parameter-tuning")
class EWC(FastTemplate):
    """Finetuning plus the EWC penalty."""

    SCENARIOS = ALL_SCENARIOS

    OPTIONS = (
        Option("ewc_lambda", float, 100000.0, "weight of the EWC penalty", low=0.0),
        Option("mode", str, "separate", "keep one Fisher per experience or a running one",
               choices=("separate", "online")),
        Option("decay_factor", float, 0.9, "decay of the running Fisher (mode=online only)",
               low=0.0, high=1.0),
    )

    def own_plugins(self):
        online = self.hp["mode"] == "online"
        return [FastEWCPlugin(self.hp["ewc_lambda"], mode=self.hp["mode"],
                              decay_factor=self.hp["decay_factor"] if online else None)]
