"""How another error's message is put on one line: its first line, or all of it folded."""
import pytest

from benchmark.core.errors import first_line, one_line


@pytest.mark.parametrize("err, first, folded", [
    (RuntimeError("Error(s) in loading:\n\tMissing key(s): a\n"), "Error(s) in loading:",
     "RuntimeError: Error(s) in loading: Missing key(s): a"),
    (ValueError("  one line  "), "one line", "ValueError: one line"),
    (EOFError(), "EOFError", "EOFError"),
    (OSError(" \n "), "OSError", "OSError"),  # a message of white space only
])
def test_first_line_and_one_line(err, first, folded):
    assert first_line(err) == first
    assert one_line(err) == folded
