"""clonebench: streams, protocol, runner, results store, metrics, statistics and reports."""
import warnings

__version__ = "0.1.0"

# Avalanche imports qpsolvers, which warns when no QP solver is installed; the suite uses none
# (they serve Avalanche's GEM-type strategies), so the warning is noise on every command.
warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
