"""Experiment files and the command line's own inputs: the TOML form of an experiment (see
``benchmark.run.plan`` for what each key means), the user's plugin modules, and ``--set``
assignments."""
from __future__ import annotations

import json
from pathlib import Path

import tomllib

from benchmark.core.errors import UsageError, one_line
from benchmark.run.plan import TOP_KEYS, Experiment
from benchmark.run.words import check_name


def load_plugins(names: list[str]) -> None:
    """Imports the user's modules that register strategies or streams: each a dotted module
    name on the Python path, or a path to a ``.py`` file. UsageError if one cannot be loaded."""
    import importlib
    import importlib.util
    import sys

    for name in names:
        try:
            if name.endswith(".py"):
                path = Path(name).expanduser()
                if not path.is_file():
                    raise UsageError(f"plugin file {path} does not exist")
                module = f"clonebench_plugin_{path.stem}"
                if module in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(module, path)
                loaded = importlib.util.module_from_spec(spec)
                sys.modules[module] = loaded
                spec.loader.exec_module(loaded)
            else:
                importlib.import_module(name)
        except UsageError:
            raise
        except ModuleNotFoundError as err:
            raise UsageError(f"cannot load plugin {name!r}: {err}; give a module on the "
                             "Python path or a path to a .py file") from None
        except Exception as err:  # the user's module failed while importing
            raise UsageError(f"plugin {name!r} failed to load: {one_line(err)}") from None


def _expect(value, kind, what: str):
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise UsageError(f"malformed config: {what} must be a {names}, got {value!r}")
    return value


def load_experiment(path: Path) -> Experiment:
    """An experiment from a TOML file; UsageError naming the problem if malformed."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except OSError as err:
        raise UsageError(f"config file {path} cannot be read ({err.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"malformed config {path}: {err}") from None
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise UsageError(f"malformed config {path}: unknown key {unknown[0]!r}; known: "
                         f"{', '.join(sorted(TOP_KEYS))}")
    plugins = [_expect(p, str, "each of plugins")
               for p in _expect(data.get("plugins", []), list, "plugins")]
    load_plugins(plugins)  # before the defaults, which list every registered strategy
    exp = Experiment(plugins=plugins)
    if "name" in data:
        exp.name = check_name(_expect(data["name"], str, "name"))
    if "stream" in data and "streams" in data:
        raise UsageError(f"malformed config {path}: give either stream or streams, not both")
    if "stream" in data:
        exp.streams = [_expect(data["stream"], str, "stream")]
    if "streams" in data:
        exp.streams = [_expect(s, str, "each of streams")
                       for s in _expect(data["streams"], list, "streams")]
    if "strategies" in data:
        exp.strategies = [_expect(s, str, "each of strategies")
                          for s in _expect(data["strategies"], list, "strategies")]
    if "seeds" in data:
        exp.seeds = [_expect(s, int, "each seed") for s in _expect(data["seeds"], list, "seeds")]
    if "device" in data:
        exp.device = _expect(data["device"], str, "device")
    if "deterministic" in data:
        exp.deterministic = _expect(data["deterministic"], bool, "deterministic")
    if "match_memory" in data:
        value = _expect(data["match_memory"], str, "match_memory")
        exp.match_memory = None if value == "none" else value
    exp.train = dict(_expect(data.get("train", {}), dict, "[train]"))
    exp.stream_options = {k: dict(_expect(v, dict, f"[stream_options.{k}]"))
                          for k, v in _expect(data.get("stream_options", {}), dict,
                                              "[stream_options]").items()}
    exp.strategy_options = {k: dict(_expect(v, dict, f"[strategy.{k}]"))
                            for k, v in _expect(data.get("strategy", {}), dict,
                                                "[strategy]").items()}
    if "source" in data:
        exp.source = dict(_expect(data["source"], dict, "[source]"))
    exp.backbones = {k: _expect(v, str, f"[backbone] {k}")
                     for k, v in _expect(data.get("backbone", {}), dict, "[backbone]").items()}
    if "scenario" in data:
        exp.scenario = dict(_expect(data["scenario"], dict, "[scenario]"))
        exp.scenario.setdefault("name", "class-incremental")
    exp.variants = [dict(_expect(v, dict, "each of variants"))
                    for v in _expect(data.get("variants", []), list, "variants")]
    if "tuned" in data:
        exp.tuned_options = tuned_options(Path(_expect(data["tuned"], str, "tuned")),
                                          exp.streams)
    return exp


def tuned_options(folder: Path, streams: list[str]) -> dict[str, dict]:
    """Per strategy, the options a tuning folder chose (``tables/choices.csv`` of ``clonebench
    tune``): those chosen on the experiment's stream, else on the folder's only stream."""
    import csv

    path = folder / "tables" / "choices.csv"
    try:
        rows = list(csv.DictReader(path.open()))
    except OSError:
        raise UsageError(f"tuned = {str(folder)!r}: {path} cannot be read; run `clonebench "
                         "tune` into that folder first") from None
    by_stream: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_stream.setdefault(row["stream"], {})[row["strategy"]] = json.loads(row["chosen"])
    for stream in streams:
        if stream in by_stream:
            return by_stream[stream]
    if len(by_stream) == 1:
        return next(iter(by_stream.values()))
    raise UsageError(f"tuned = {str(folder)!r} holds choices for {', '.join(sorted(by_stream))}"
                     f", none of them the experiment's stream; name a tuning folder of one "
                     "stream")


def parse_scenario_option(text: str) -> tuple[str, str]:
    """``OPTION=VALUE`` from ``--scenario-option`` as (option, value string)."""
    option, sep, value = text.partition("=")
    if not sep or not option.strip():
        raise UsageError(f"bad --scenario-option {text!r}: expected OPTION=VALUE, e.g. shots=10")
    return option.strip(), value.strip()


def parse_assignment(text: str) -> tuple:
    """``STRATEGY.OPTION=VALUE`` from ``--set`` as (strategy, option, value string)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise UsageError(f"bad --set {text!r}: expected STRATEGY.OPTION=VALUE, "
                         "e.g. ewc.ewc_lambda=100")
    lhs, value = text.split("=", 1)
    strategy, option = lhs.split(".", 1)
    return strategy.strip(), option.strip(), value.strip()
