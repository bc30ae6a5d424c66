"""What ``clonebench list`` prints: the streams, scenarios, backbones, strategies and backends,
with their options, defaults and meaning.

Building the text imports every registry, and with them PyTorch and Avalanche (about 10 s on a
2-core machine, most of it ``import avalanche``, which imports all of its subpackages whatever
one imports from it). The text depends only on the suite's own source files, so it is kept in a
cache keyed by their fingerprint (path, size and modification time of every ``.py`` file of the
``benchmark`` and ``strategies`` packages, the suite's version and Python's): a later ``list``
with the same code prints it without importing anything heavy. The cache is
``$CLONEBENCH_CACHE`` (else ``$XDG_CACHE_HOME/clonebench``, else ``~/.cache/clonebench``); a
``list`` with ``--plugins`` (code the fingerprint does not cover) always builds the text. An
unwritable cache folder only costs the speed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

PACKAGES = ("benchmark", "strategies")


def cache_folder() -> Path:
    explicit = os.environ.get("CLONEBENCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "clonebench"


def fingerprint() -> str:
    """A hash of the suite's source files (path, size, mtime), its version and Python's."""
    digest = hashlib.sha256(sys.version.encode())
    try:
        from importlib.metadata import version

        digest.update(version("clonebench").encode())
    except Exception:  # not installed (run from a checkout): the files alone decide
        pass
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        for folder in spec.submodule_search_locations or []:
            for path in sorted(Path(folder).rglob("*.py")):
                st = path.stat()
                digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def listing(plugins: list[str]) -> str:
    """The text of ``clonebench list`` (from the cache when the code is unchanged and no
    ``plugins`` are given)."""
    if plugins:
        return build_listing(plugins)
    path = cache_folder() / f"list-{fingerprint()}.txt"
    try:
        return path.read_text()
    except OSError:
        pass
    text = build_listing([])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        pass
    return text


def _options(options, indent: str = "      ") -> list[str]:
    return [f"{indent}{opt.describe()}" for opt in options]


def build_listing(plugins: list[str]) -> str:
    """The listing, from the registries (after loading ``plugins``)."""
    from benchmark.core.models import BACKBONES
    from benchmark.data import STREAMS
    from benchmark.run.backends import BACKENDS
    from benchmark.run.experiment_file import load_plugins
    from benchmark.run.plan import default_strategy_order
    from benchmark.scenarios import SCENARIOS
    from strategies import STRATEGIES

    load_plugins(plugins)
    lines = ["Streams:"]
    for name, spec in STREAMS.items():
        td = ", ".join(f"{k}={v}" for k, v in spec.train_defaults.items())
        lines += [f"  {name}: {spec.summary}", f"      backbone {spec.backbone}; training {td}"]
        lines += _options(spec.options)
    lines += ["", "Scenarios:"]
    for name, spec in SCENARIOS.items():
        lines += [f"  {name}: {spec.summary}",
                  f"      receives: {spec.receives}; evaluated on: {spec.evaluated}"]
        lines += _options(spec.options)
    lines += ["", "Backbones (a name, or NAME:OPTION=VALUE,... e.g. cnn:channels=16-32-64):"]
    for name, spec in BACKBONES.items():
        lines.append(f"  {name}: {spec.summary} (inputs: {spec.inputs})")
        lines += _options(spec.options)
    lines += ["", "Strategies:"]
    for name in default_strategy_order():
        spec = STRATEGIES.get(name)
        role = f" [{spec.role}: {spec.note}]" if spec.note else (
            f" [{spec.role}]" if spec.role != "rival" else "")
        src = " [uses a source network]" if spec.uses_source else ""
        lines += [f"  {name}: {spec.summary} (family: {spec.family}){role}{src}",
                  f"      scenarios: {', '.join(spec.scenarios)}"]
        lines += _options(spec.options)
    lines += ["", "Backends:"]
    for name, spec in BACKENDS.items():
        lines.append(f"  {name}: {spec.summary}")
        lines += _options(spec.options)
    return "\n".join(lines) + "\n"
