"""The plan: from a TOML file and CLI flags to validated run configurations.

Everything is resolved and checked here, once, before anything runs or is written: stream
names and options (and the split they give), backbones against the stream's input shape,
strategy options (and those that depend on the backbone's depth), the device, the seeds and the
execution settings (``ExecOptions``: threads, data root). The runner then executes a
``RunConfig`` as it is.

An experiment is streams x strategies (with hyper-parameters) x seeds x device. Its TOML form::

    name = "my-experiment"
    streams = ["split-digits"]            # or: stream = "split-digits"
    strategies = ["finetune", "ewc", "pnc"]
    seeds = [0, 1, 2]
    device = "auto"                       # auto | cpu | cuda
    deterministic = false                 # set PyTorch's deterministic flags (GPU)

    [train]                               # overrides the streams' default training settings
    epochs = 10                           # also: batch_size, lr, optimizer, momentum, weight_decay

    [stream_options.split-digits]         # per-stream options (`clonebench list`)
    n_experiences = 5

    [strategy.ewc]                        # per-strategy hyper-parameters
    ewc_lambda = 1000.0

    [backbone]                            # per-stream backbone instead of the stream's default
    split-cifar100 = "resnet32"

    [source]                              # where PNC and weight fusion get their source
    provider = "expert"                   # or "checkpoint" with path = "zoo/model-{step}.pt"

A *run* is one (stream, strategy, seed); its key hashes its resolved configuration. An
experiment's ``name`` is a plain name (letters, digits, ``-``, ``_``, ``.``): it names the folder
``results/<name>``, never a path.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmark.core.errors import UsageError
from benchmark.core.models import BACKBONES, make_backbone
from benchmark.core.training import TrainSettings
from benchmark.data import get_stream, resolve_stream_options
from benchmark.run.sources import validate_source
from strategies import STRATEGIES, get_strategy

DEFAULT_SEEDS = list(range(10))
SHARES_OPTIONS = {"pnc-oracle": "pnc"}  # a reference built with another strategy's options
DEVICES = ("auto", "cpu", "cuda")
TOP_KEYS = {"plugins", "name", "stream", "streams", "strategies", "seeds", "device",
            "deterministic", "train", "stream_options", "strategy", "source", "backbone",
            "match_memory"}
TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainSettings)}
LOGGERS = ("csv", "tensorboard")
CHECKPOINT_POLICIES = ("auto", "always", "off")


def matchable(strategy: str) -> bool:
    """True for a strategy whose memory is a byte budget (``memory_bytes`` option)."""
    return any(o.name == "memory_bytes" for o in get_strategy(strategy).options)


def check_matching(strategies: list[str], reference: Optional[str]) -> None:
    """UsageError unless ``reference`` runs in the experiment and some strategy can match it."""
    if reference is None:
        return
    if reference not in strategies:
        raise UsageError(f"match_memory names {reference!r}, which is not among the "
                         "experiment's strategies; add it or drop match_memory")
    if not any(matchable(s) for s in strategies):
        raise UsageError("match_memory needs a strategy with a memory_bytes budget (replay, "
                         "icarl, der, gdumb, agem) among the experiment's strategies")


def default_strategy_order() -> list[str]:
    """Every registered strategy, the references first."""
    return sorted(STRATEGIES, key=lambda n: (not STRATEGIES.get(n).reference, n))


@dataclass(frozen=True)
class ExecOptions:
    """How runs execute (not part of a run's identity): the data root, whether a missing data
    set may be downloaded, torch CPU threads per run, where experts are cached, progress bars,
    notices (``quiet``), and the files a run may write where it executes:

    - ``model_dir``: each run's final model as ``<key>.pt`` (None: not saved);
    - ``checkpoint_dir``: per-step checkpoints under ``<key>/`` (None: none), written after a
      step according to ``checkpoints`` (``benchmark.run.checkpoints``: ``auto``, ``always``,
      ``off``), and resumed from when present;
    - ``log_dir`` and ``loggers``: Avalanche loggers (``LOGGERS``) writing under
      ``<log_dir>/<key>/``.
    """

    data_root: Optional[str] = None
    download: bool = False
    threads: int = 1
    expert_dir: Optional[Path] = None
    show_progress: bool = False
    quiet: bool = False
    model_dir: Optional[Path] = None
    checkpoint_dir: Optional[Path] = None
    checkpoints: str = "auto"
    log_dir: Optional[Path] = None
    loggers: tuple[str, ...] = ()
    batch_seeds: bool = False  # train a configuration's seeds together (benchmark.run.seed_batch)

    def __post_init__(self):
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) \
                or self.threads < 1:
            raise UsageError(f"bad thread count {self.threads!r}: expected an integer >= 1")
        if self.checkpoints not in CHECKPOINT_POLICIES:
            raise UsageError(f"bad --checkpoints {self.checkpoints!r}; choose one of "
                             f"{', '.join(CHECKPOINT_POLICIES)}")
        unknown = [name for name in self.loggers if name not in LOGGERS]
        if unknown:
            raise UsageError(f"unknown logger {unknown[0]!r} for --log; choose among "
                             f"{', '.join(LOGGERS)}")
        if len(set(self.loggers)) != len(self.loggers):
            raise UsageError(f"logger given twice in --log {','.join(self.loggers)}")


@dataclass(frozen=True)
class RunConfig:
    """The resolved configuration of one run (what its key hashes)."""

    stream: str
    stream_options: dict[str, Any]
    backbone: str
    strategy: str
    hparams: dict[str, Any]
    seed: int
    train: dict[str, Any]
    device: str
    deterministic: bool
    source: Optional[dict[str, Any]]
    evaluation: Optional[dict[str, Any]] = None  # None: the test split
    data_version: int = 1  # the stream's data version (``StreamSpec.version``)
    memory_match: Optional[str] = None  # the strategy whose extra bytes set memory_bytes

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["epochs"] = self.train["epochs"]
        d["split"] = "test" if self.evaluation is None else self.evaluation["split"]
        return d

    @property
    def key(self) -> str:
        d = dataclasses.asdict(self)
        if d["evaluation"] is None:  # runs on the test split keep the keys they always had
            del d["evaluation"]
        if d["data_version"] == 1:  # likewise for streams whose data never changed
            del d["data_version"]
        if d["memory_match"] is None:
            del d["memory_match"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Experiment:
    name: str = "default"
    streams: list[str] = field(default_factory=lambda: ["split-digits"])
    strategies: list[str] = field(default_factory=default_strategy_order)
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    device: str = "auto"
    deterministic: bool = False
    train: dict[str, Any] = field(default_factory=dict)
    stream_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    strategy_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=lambda: {"provider": "expert"})
    backbones: dict[str, str] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    # None: evaluate on the test split; {"split": "validation", "fraction": f}: on a
    # validation set carved from each experience's training data (tuning; see benchmark.tune)
    evaluation: Optional[dict[str, Any]] = None
    # a strategy (pnc) whose extra bytes set the budgets of a second, memory-matched
    # configuration of every buffer rival (benchmark.run.matching); "auto": pnc when pnc and a
    # buffer rival both run, else none; None (the default): no matched runs
    match_memory: Optional[str] = None

    @property
    def matched_to(self) -> Optional[str]:
        """The strategy the memory match follows, or None (``match_memory`` resolved)."""
        if self.match_memory != "auto":
            return self.match_memory
        return "pnc" if "pnc" in self.strategies and any(
            matchable(s) for s in self.strategies if s in STRATEGIES) else None

    def run_configs(self) -> list[RunConfig]:
        """Every run of the grid, validated; UsageError on the first bad name or value."""
        device = resolve_device(self.device)
        source = validate_source(self.source)
        check_matching(self.strategies, self.matched_to)
        for stream, backbone in self.backbones.items():
            if stream not in self.streams:
                raise UsageError(f"[backbone] names stream {stream!r}, which is not in the "
                                 "experiment's streams")
            if backbone not in BACKBONES:
                raise UsageError(f"unknown backbone {backbone!r} for {stream}; choose one of: "
                                 f"{', '.join(BACKBONES)}")
        for kind, names in (("stream", self.streams), ("strategy", self.strategies),
                            ("seed", self.seeds)):
            if len(set(names)) != len(names):
                raise UsageError(f"duplicate {kind} in {names}")
        bad_seeds = [s for s in self.seeds if isinstance(s, bool) or not 0 <= s < 2 ** 32]
        if bad_seeds:
            raise UsageError(f"bad seed {bad_seeds[0]!r}: seeds are integers in [0, 2**32)")
        unknown_streams = sorted(set(self.stream_options) - set(self.streams))
        if unknown_streams:
            raise UsageError(f"[stream_options] names stream {unknown_streams[0]!r}, which is "
                             "not in the experiment's streams")
        unknown_opts = sorted(set(self.strategy_options) - set(self.strategies))
        if unknown_opts:
            raise UsageError(f"options given for strategy {unknown_opts[0]!r}, which is not in "
                             "the experiment's strategies")
        runs = []
        for stream in self.streams:
            spec = get_stream(stream)
            s_opts = resolve_stream_options(spec, self.stream_options.get(stream, {}))
            spec = spec.for_options(s_opts)  # class count and shape of the user's files
            train = resolve_train(spec.train_defaults, self.train)
            backbone = self.backbones.get(stream, spec.backbone)
            depth = probe_backbone(spec, backbone)
            for strategy in self.strategies:
                sspec = get_strategy(strategy)
                hparams = sspec.resolve(self.options_of(strategy))
                if sspec.check is not None and depth is not None:
                    sspec.check(hparams, depth)
                for seed in self.seeds:
                    runs.append(RunConfig(stream, s_opts, backbone, strategy, hparams,
                                          seed, train, device, self.deterministic,
                                          source if sspec.uses_source else None,
                                          self.evaluation, spec.version))
        return runs

    def options_of(self, strategy: str) -> dict[str, Any]:
        """The options given for ``strategy``; a reference that shares another strategy's
        options (``pnc-oracle``: PNC's modules) takes that strategy's unless given its own."""
        if strategy in self.strategy_options:
            return self.strategy_options[strategy]
        shared = SHARES_OPTIONS.get(strategy)
        return self.strategy_options.get(shared, {}) if shared else {}


def probe_backbone(spec, backbone: str) -> Optional[int]:
    """The backbone's depth (blocks), after checking it accepts the stream's input shape with a
    forward pass on zeros; None when the stream does not declare its shape."""
    if spec.input_shape is None or spec.num_classes is None:
        return None
    import torch

    net = make_backbone(backbone, spec.num_classes, spec.input_shape, seed=0).eval()
    try:
        with torch.no_grad():
            net(torch.zeros(2, *spec.input_shape))
    except RuntimeError:
        raise UsageError(f"backbone {backbone!r} does not take {spec.name}'s inputs of shape "
                         f"{tuple(spec.input_shape)}; choose another in [backbone]") from None
    return net.depth


def resolve_device(device: str) -> str:
    if device not in DEVICES:
        raise UsageError(f"bad --device {device!r}; choose auto, cpu or cuda")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return device


def resolve_train(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Stream defaults with overrides, validated, as a plain dict of TrainSettings fields."""
    unknown = sorted(set(overrides) - TRAIN_KEYS)
    if unknown:
        raise UsageError(f"unknown training setting {unknown[0]!r}; known: "
                         f"{', '.join(sorted(TRAIN_KEYS))}")
    merged = dataclasses.asdict(TrainSettings(**defaults))
    merged.update(overrides)
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if isinstance(merged[name], bool) or not isinstance(merged[name], int) or merged[name] < 1:
            raise UsageError(f"bad value {merged[name]!r} for {name}: expected an integer >= 1")
    for name in ("lr", "momentum", "weight_decay"):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or \
                (name == "lr" and value == 0):
            raise UsageError(f"bad value {value!r} for {name}: expected a positive number")
        merged[name] = float(value)
    if merged["optimizer"] not in ("adam", "sgd"):
        raise UsageError(f"bad value {merged['optimizer']!r} for optimizer: choose adam or sgd")
    return merged
