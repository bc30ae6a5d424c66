"""clonebench: streams, protocol, runner, results store, metrics, statistics and reports."""
__version__ = "0.1.0"
