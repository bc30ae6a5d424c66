"""Speed benchmarks of the suite against plain PyTorch and plain Avalanche (``clonebench
perf``)."""
