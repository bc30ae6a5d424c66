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

    [scenario]                            # how the stream's data become steps
    name = "cloning"                      # class-incremental (default) | cloning |
    shots = 10                            # domain-incremental | mixed; then its options

    tuned = "results/tuning/my-tuning"    # (top level) the options a tuning folder chose
    variants = [{strategy = "ewc", ewc_lambda = 10.0}]   # (top level) more configurations

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
from benchmark.core.models import canonical_backbone, make_backbone
from benchmark.core.training import TrainSettings
from benchmark.data import get_stream, resolve_stream_options
from benchmark.run.choices import CHECKPOINT_POLICIES
from benchmark.run.sources import validate_source
from benchmark.scenarios import DEFAULT_SCENARIO, StreamFacts, check_scenario, resolve_scenario
from strategies import STRATEGIES, get_strategy

DEFAULT_SEEDS = list(range(10))
SHARES_OPTIONS = {"pnc-oracle": "pnc"}  # a reference built with another strategy's options
DEVICES = ("auto", "cpu", "cuda")
TOP_KEYS = {"plugins", "name", "stream", "streams", "strategies", "seeds", "device",
            "deterministic", "train", "stream_options", "strategy", "source", "backbone",
            "match_memory", "scenario", "tuned", "variants"}
TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainSettings)}
LOGGERS = ("csv", "tensorboard")


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
      ``<log_dir>/<key>/``;
    - ``preloaded``: networks the grid trained once for several runs (their sources, a
      pre-trained target), handed to the run (``benchmark.run.sources.preload``).
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
    preloaded: Optional[dict] = None  # networks trained once for the grid (runner.preload)
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
    scenario: Optional[dict[str, Any]] = None  # None: class-incremental, the stream as built

    @property
    def scenario_name(self) -> str:
        return DEFAULT_SCENARIO if self.scenario is None else self.scenario["name"]

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["epochs"] = self.train["epochs"]
        d["split"] = "test" if self.evaluation is None else self.evaluation["split"]
        d["scenario"] = self.scenario or {"name": DEFAULT_SCENARIO}
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
        if d["scenario"] is None:  # class-incremental runs keep the keys they always had
            del d["scenario"]
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
    # {"name": scenario, **its options} (benchmark.scenarios); class-incremental by default
    scenario: dict[str, Any] = field(default_factory=lambda: {"name": DEFAULT_SCENARIO})
    # per strategy, the options a tuning folder chose (``tuned`` in an experiment file), under
    # the options given explicitly
    tuned_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # further configurations of strategies: {"strategy": NAME, **its options} each
    variants: list[dict[str, Any]] = field(default_factory=list)

    def planned_strategies(self) -> list[str]:
        """The strategies to run: those named; when none were named (the default list, every
        registered strategy), those that support the experiment's scenario."""
        name = self.scenario.get("name", DEFAULT_SCENARIO)
        if name == DEFAULT_SCENARIO or self.strategies != default_strategy_order():
            return list(self.strategies)
        return [s for s in self.strategies if name in get_strategy(s).scenarios]

    @property
    def matched_to(self) -> Optional[str]:
        """The strategy the memory match follows, or None (``match_memory`` resolved)."""
        if self.match_memory != "auto":
            return self.match_memory
        planned = self.planned_strategies()
        return "pnc" if "pnc" in planned and any(
            matchable(s) for s in planned if s in STRATEGIES) else None

    def run_configs(self) -> list[RunConfig]:
        """Every run of the grid, validated; UsageError on the first bad name or value."""
        device = resolve_device(self.device)
        source = validate_source(self.source)
        scenario = resolve_scenario(self.scenario)
        strategies = self.planned_strategies()
        check_matching(strategies, self.matched_to)
        for stream in self.backbones:
            if stream not in self.streams:
                raise UsageError(f"[backbone] names stream {stream!r}, which is not in the "
                                 "experiment's streams")
        for kind, names in (("stream", self.streams), ("strategy", strategies),
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
        unknown_opts = sorted(set(self.strategy_options) - set(strategies))
        if unknown_opts:
            raise UsageError(f"options given for strategy {unknown_opts[0]!r}, which is not in "
                             "the experiment's strategies")
        for strategy in strategies:
            check_supports(strategy, scenario["name"])
        runs = []
        for stream in self.streams:
            spec = get_stream(stream)
            s_opts = resolve_stream_options(spec, self.stream_options.get(stream, {}))
            spec = spec.for_options(s_opts)  # class count and shape of the user's files
            train = resolve_train(spec.train_defaults, self.train)
            backbone = canonical_backbone(self.backbones.get(stream, spec.backbone))
            depth = probe_backbone(spec, backbone)
            stream_scenario = plan_scenario(scenario, spec, backbone, source)
            for strategy, options in self.configurations(strategies):
                sspec = get_strategy(strategy)
                hparams = sspec.resolve(options)
                if sspec.check is not None and depth is not None:
                    sspec.check(hparams, depth)
                given = scenario_source(stream_scenario, source) if sspec.uses_source else None
                if sspec.same_source_architecture and given is not None and \
                        given.get("backbone", backbone) != backbone:
                    raise UsageError(f"{strategy} fuses weights, so its source needs the "
                                     f"target's backbone {backbone!r}, not "
                                     f"{given['backbone']!r}; drop source_backbone or "
                                     f"{strategy}")
                for seed in self.seeds:
                    runs.append(RunConfig(stream, s_opts, backbone, strategy, hparams,
                                          seed, train, device, self.deterministic, given,
                                          self.evaluation, spec.version,
                                          scenario=stream_scenario))
        return runs

    def configurations(self, strategies: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """(strategy, options) of every configuration to run: each strategy with its options,
        then each variant (a strategy again, with the variant's options over its own)."""
        configs = [(s, self.options_of(s)) for s in strategies]
        for variant in self.variants:
            variant = dict(variant)
            name = variant.pop("strategy", None)
            if not isinstance(name, str):
                raise UsageError(f"malformed config: variant {variant!r} needs strategy = NAME")
            check_supports(name, self.scenario.get("name", DEFAULT_SCENARIO))
            configs.append((name, {**self.options_of(name), **variant}))
        return configs

    def options_of(self, strategy: str) -> dict[str, Any]:
        """The options given for ``strategy`` (over those a tuning folder chose for it); a
        reference that shares another strategy's options (``pnc-oracle``: PNC's modules) takes
        that strategy's unless given its own."""
        owner = strategy
        if strategy not in self.strategy_options and strategy not in self.tuned_options:
            owner = SHARES_OPTIONS.get(strategy, strategy)
        return {**self.tuned_options.get(owner, {}), **self.strategy_options.get(owner, {})}


def check_supports(strategy: str, scenario: str) -> None:
    """UsageError unless ``strategy`` declares ``scenario`` among those it supports."""
    supported = get_strategy(strategy).scenarios
    if scenario not in supported:
        raise UsageError(f"strategy {strategy!r} does not support the {scenario} scenario (it "
                         f"supports: {', '.join(supported)}); leave it out of the experiment")


def plan_scenario(scenario: dict[str, Any], spec, backbone: str,
                  source: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The run configurations' scenario block on a stream (None for class-incremental), its
    options checked against the stream's classes and shape; the cloning scenario's source
    backbone made canonical and checked against the stream's inputs."""
    if scenario["name"] == DEFAULT_SCENARIO:
        return None
    if spec.num_classes is not None and spec.input_shape is not None:
        image = spec.image_shape or (tuple(spec.input_shape)
                                     if len(spec.input_shape) == 3 else None)
        check_scenario(scenario, StreamFacts(spec.num_classes, tuple(spec.input_shape), image))
    resolved = dict(scenario)
    if scenario["name"] == "cloning":
        if source["provider"] != "expert":
            raise UsageError("the cloning scenario brings its own sources (a model zoo, one "
                             "pre-trained source per act); leave [source] out")
        if resolved["source_backbone"] is not None:
            resolved["source_backbone"] = canonical_backbone(resolved["source_backbone"])
            probe_backbone(spec, resolved["source_backbone"])
    return resolved


def scenario_source(scenario: Optional[dict[str, Any]], source: dict[str, Any]
                    ) -> dict[str, Any]:
    """What a strategy that uses a source is given: the experiment's provider, or in the
    cloning scenario the act's zoo source (with its backbone when it differs)."""
    if scenario is None or scenario["name"] != "cloning":
        return source
    zoo = {"provider": "zoo"}
    if scenario["source_backbone"] is not None:
        zoo["backbone"] = scenario["source_backbone"]
    return zoo


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
