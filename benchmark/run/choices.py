"""Names and constants the command line needs before anything heavy is imported."""

CHECKPOINT_POLICIES = ("auto", "always", "off")
# ``auto`` checkpoints after a step once a run has trained this many seconds since its start or
# its last checkpoint (benchmark.run.artifacts)
AUTO_SECONDS = 60.0
