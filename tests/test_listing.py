"""``clonebench list`` keeps its text in a cache keyed by the suite's source files: the second
call prints it without importing the registries; plugins always rebuild it; ``--help`` imports
nothing heavy."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmark import listing

REPO = Path(__file__).resolve().parents[1]


def test_list_is_served_from_the_cache_when_the_code_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("CLONEBENCH_CACHE", str(tmp_path))
    first = listing.listing([])
    cached = tmp_path / f"list-{listing.fingerprint()}.txt"
    assert cached.read_text() == first and "Scenarios:" in first
    cached.write_text("a listing kept in the cache\n")
    assert listing.listing([]) == "a listing kept in the cache\n"
    assert listing.listing(["benchmark.data"]) == first  # plugins: built afresh


def test_the_fingerprint_follows_the_source_files(tmp_path, monkeypatch):
    before = listing.fingerprint()
    assert listing.fingerprint() == before
    spec_folder = tmp_path / "pkg"
    spec_folder.mkdir()
    (spec_folder / "__init__.py").write_text("")
    monkeypatch.setattr(listing, "PACKAGES", ("benchmark", "strategies"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(listing, "PACKAGES", ("benchmark", "strategies", "pkg"))
    with_pkg = listing.fingerprint()
    (spec_folder / "mod.py").write_text("x = 1\n")
    assert listing.fingerprint() != with_pkg != before


def test_help_imports_neither_torch_nor_avalanche():
    code = ("import sys\nfrom benchmark.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'avalanche', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
