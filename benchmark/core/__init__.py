"""The small core that strategies and the rest of the suite build on: errors, options and
registries, tensor experiences and their loader, block backbones, training settings and the
metric definitions. Nothing here imports the runner, the reports or ``strategies``."""
