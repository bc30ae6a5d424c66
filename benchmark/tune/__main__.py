"""``python -m benchmark.tune ...`` is ``clonebench tune ...``."""
import sys

from benchmark.cli import main

sys.exit(main(["tune", *sys.argv[1:]]))
