"""``python -m benchmark.perf ...`` is ``clonebench perf ...``."""
import sys

from benchmark.cli import main

sys.exit(main(["perf", *sys.argv[1:]]))
