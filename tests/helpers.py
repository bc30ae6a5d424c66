"""Helpers shared by the tests: running the CLI in-process, reading records, hashing model
state, snapshotting folders, and the small grids several tests run."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.cli import main
from benchmark.core.metrics import METRICS, in_range

# The grid of the foundation's end-to-end tests: 3 strategies x 2 seeds, 2 epochs per step.
GRID_STRATEGIES = ("finetune", "ewc", "lwf")
GRID_SEEDS = (0, 1)
GRID_ARGS = ["run", "--stream", "split-digits", "--strategies", ",".join(GRID_STRATEGIES),
             "--seeds", *map(str, GRID_SEEDS), "--epochs", "2", "--device", "cpu", "--quiet"]
# A one-run results folder (finetune, seed 0, 1 epoch) for tests that only need valid records.
SMALL_ARGS = ["run", "--stream", "split-digits", "--strategies", "finetune", "--seeds", "0",
              "--epochs", "1", "--device", "cpu", "--quiet"]


@dataclass
class CliResult:
    """Exit status and captured output of one ``clonebench`` invocation."""

    code: int
    out: str
    err: str


def state_hash(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def assert_metrics_in_range(metrics: dict) -> None:
    """Every metric of the metric table is present and within its declared range."""
    for metric in METRICS:
        assert metric.name in metrics, metric.name
        assert in_range(metric, metrics[metric.name]), (metric.name, metrics[metric.name])


def run_cli(args: list[str]) -> CliResult:
    """Runs ``clonebench ARGS`` in this process, capturing stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return CliResult(code, out.getvalue(), err.getvalue())


def load_records(root: Path) -> dict[str, dict]:
    """Every record under ``root/runs`` as parsed JSON, by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((root / "runs").glob("*.json"))}


Snapshot = dict[str, tuple[str, bytes, int]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root``: kind, bytes (files) and modification time in nanoseconds."""
    root = Path(root)
    if not root.exists():
        return {}
    snap = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        if path.is_dir():
            snap[str(path.relative_to(root))] = ("dir", b"", stat.st_mtime_ns)
        else:
            snap[str(path.relative_to(root))] = ("file", path.read_bytes(), stat.st_mtime_ns)
    return snap


def copy_results(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def comparable(record: dict) -> dict:
    """A record without what legitimately differs between two executions of one run: when
    and where it ran (``created``, ``environment``, which says whether it resumed) and what it
    cost in time and memory (the source block holds its times and cache hits)."""
    kept = {k: v for k, v in record.items() if k not in ("created", "environment")}
    kept["costs"] = {k: v for k, v in record["costs"].items()
                     if k not in ("seconds", "total_seconds", "peak_memory_mb", "source")}
    return kept


def override(base: list, extra: list) -> list:
    """``base`` CLI arguments with every flag that ``extra`` gives removed (with its values),
    then ``extra``: each flag given once, as ``clonebench`` requires."""
    flags = {a for a in map(str, extra) if a.startswith("--")}
    kept, dropping = [], False
    for arg in base:
        if str(arg).startswith("--"):
            dropping = arg in flags
        if not dropping:
            kept.append(arg)
    return kept + list(extra)


def build_strategy(name: str, data, settings, seed: int = 0, plugins=(), backbone: str = "mlp"):
    """The registered strategy ``name`` with its default options on ``data``'s backbone, built
    as the runner builds it (expert sources, theta_0, the stream's sample size and budget)."""
    from benchmark.core.models import make_backbone
    from benchmark.data import STREAMS
    from benchmark.run.sources import ExpertProvider
    from strategies import STRATEGIES, StrategyContext

    spec = STRATEGIES[name]

    def make_model():
        return make_backbone(backbone, data.num_classes, data.input_shape, seed=seed)

    model = make_model()
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    identity = {"test": name, "stream": data.name, "seed": seed, "backbone": backbone}
    provider = ExpertProvider(make_model, theta0, settings, identity, torch.device("cpu"))
    memory = STREAMS[data.name].memory_bytes if data.name in STREAMS else None
    ctx = StrategyContext(device=torch.device("cpu"), train=settings, seed=seed,
                          num_classes=data.num_classes,
                          source_provider=provider if spec.uses_source else None,
                          initial_state=theta0, sample_bytes=data.sample_bytes,
                          memory_bytes=memory, plugins=list(plugins))
    return spec.build(model, ctx, **spec.resolve({}))
