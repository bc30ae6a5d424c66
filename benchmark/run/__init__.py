"""Running experiments: the plan (configs), the sources of the protocol, one run's execution,
the grid and its backends, claims between drivers, and the results store."""
