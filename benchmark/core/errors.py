"""Errors a user can fix (the CLI prints them as one line and exits with status 2), and how
another error's message is put on one line: its first line (``first_line``) or all of it folded
(``one_line``)."""


class UsageError(Exception):
    """Bad input: unknown name, bad option value, malformed config, missing data, bad folder.

    The message names the problem and the fix, on one line.
    """


class RecordError(UsageError):
    """A file in a results folder that is not a valid clonebench record."""


class DivergenceError(RuntimeError):
    """Training produced a NaN or infinite loss; the run is recorded as failed."""


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message, stripped; the name of its type when the message is
    empty."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def one_line(err: BaseException) -> str:
    """``err`` as ``Type: message``, its whole message folded onto one line (``Type`` alone when
    the message is empty)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
