"""Progress bars that appear only on a terminal (and never with ``--quiet``)."""
from tqdm.auto import tqdm


def progress_bar(iterable=None, total=None, desc=None, enabled=True, leave=True):
    """A tqdm bar, or a silent pass-through when ``enabled`` is false."""
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=leave,
                dynamic_ncols=True)
