"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""


class UsageError(Exception):
    """Bad input: unknown name, bad option value, malformed config, missing data, bad folder.

    The message names the problem and the fix, on one line.
    """


class RecordError(UsageError):
    """A file in a results folder that is not a valid clonebench record."""


class DivergenceError(RuntimeError):
    """Training produced a NaN or infinite loss; the run is recorded as failed."""
