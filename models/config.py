"""Training configurations: TOML files with four tables, defaults for every key, dotted
``--set key=value`` overrides, and a writer for the effective configuration.

.. code-block:: toml

    [model]
    input = [32, 32, 3]          # H, W, C
    seed = 0
    dtype = "float32"
    [[model.stages]]             # one table per stage, bottom first
    k = 8
    maps = 8
    pool = 3
    lcn = 3

    [train]
    mode = "greedy"              # or "joint"
    steps = 100                  # per stage (greedy) or in all (joint)
    batch = 32
    optimizer = "sgd"            # or "adagrad"
    lr = 0.05

    [data]
    source = "bundled"           # or "folder", "cifar10", "stl10"

    [run]
    grid = "auto"                # or [rows, cols] per replica
    replicas = 1

See docs/training.md for every key.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .network import StageSpec
from .optim import Schedule

__all__ = ["DEFAULTS", "load_config", "parse_config", "apply_overrides", "to_toml", "stage_specs"]

#: Every key a configuration may hold, with its default (``model.stages`` and ``data`` are
#: checked by :class:`~models.network.StageSpec` and :func:`models.data.make_dataset`).
DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"input": [32, 32, 3], "seed": 0, "dtype": "float32", "stages": []},
    "train": {
        "mode": "greedy", "steps": 100, "batch": 32, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
        "weight_decay": 0.0, "adagrad_eps": 1e-8, "schedule": "constant", "warmup": 0, "final_lr": 0.0,
        "decay_factor": 0.5, "decay_every": 1000, "log_every": 1, "checkpoint_every": 0, "keep_checkpoints": 2,
    },
    "data": {"source": "bundled"},
    "run": {"grid": "auto", "replicas": 1, "backend": "numpy"},
}

_STAGE_KEYS = {"k", "maps", "pool", "lcn", "stride", "lambda", "eps"}
_CHOICES = {("train", "mode"): ("greedy", "joint"), ("train", "optimizer"): ("sgd", "adagrad"),
            ("train", "schedule"): ("constant", "cosine", "step"), ("model", "dtype"): ("float32", "float64"),
            ("run", "backend"): ("numpy", "cupy")}


def _check_type(where: str, value: Any, default: Any) -> None:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"expected {where} as true or false, got {value!r}")
        return
    if isinstance(value, bool):
        raise ValueError(f"expected {where} as {type(default).__name__}, got {value!r}")
    if isinstance(default, float) and isinstance(value, (int, float)):
        return
    if where == "run.grid":  # "auto" or [rows, cols]: checked in parse_config
        return
    if not isinstance(value, type(default)):
        raise ValueError(f"expected {where} as {type(default).__name__}, got {value!r}")


def parse_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``raw`` (as read from TOML) over :data:`DEFAULTS` and check it; returns the
    effective configuration (a new nested dict)."""
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; expected some of {sorted(DEFAULTS)}")
    config = copy.deepcopy(DEFAULTS)
    for table, values in raw.items():
        if not isinstance(values, Mapping):
            raise ValueError(f"expected [{table}] to be a table, got {values!r}")
        if table == "data":
            config["data"] = dict(values)
            config["data"].setdefault("source", "bundled")
            continue
        for key, value in values.items():
            if key not in DEFAULTS[table]:
                raise ValueError(f"unknown key {table}.{key}; expected one of {sorted(DEFAULTS[table])}")
            _check_type(f"{table}.{key}", value, DEFAULTS[table][key])
            config[table][key] = copy.deepcopy(value)
    for (table, key), choices in _CHOICES.items():
        if config[table][key] not in choices:
            raise ValueError(f"expected {table}.{key} one of {choices}, got {config[table][key]!r}")
    model, train, run = config["model"], config["train"], config["run"]
    if len(model["input"]) != 3 or not all(type(n) is int and n > 0 for n in model["input"]):
        raise ValueError(f"expected model.input as [H, W, C] positive integers, got {model['input']}")
    model["stages"] = [_stage_table(spec) for spec in stage_specs(model["stages"])]  # every key explicit
    if train["keep_checkpoints"] < 1 or train["checkpoint_every"] < 0:
        raise ValueError(f"expected train.keep_checkpoints >= 1 and train.checkpoint_every >= 0 (0: at the end "
                         f"only), got {train['keep_checkpoints']} and {train['checkpoint_every']}")
    if not 0 <= train["momentum"] < 1 or not train["weight_decay"] >= 0 or not train["adagrad_eps"] > 0:
        raise ValueError(f"expected 0 <= train.momentum < 1, train.weight_decay >= 0 and train.adagrad_eps > 0, "
                         f"got {train['momentum']}, {train['weight_decay']}, {train['adagrad_eps']}")
    for key in ("steps", "batch", "log_every", "replicas"):
        table = run if key == "replicas" else train
        if table[key] < 1:
            raise ValueError(f"expected {'run' if key == 'replicas' else 'train'}.{key} >= 1, got {table[key]}")
    try:
        Schedule(train["lr"], train["schedule"], train["steps"], train["warmup"], train["final_lr"],
                 train["decay_factor"], train["decay_every"])
    except ValueError as exc:
        raise ValueError(f"train.lr, warmup, final_lr, decay_factor or decay_every out of range: {exc}") from None
    if train["batch"] % run["replicas"]:
        raise ValueError(f"expected train.batch ({train['batch']}) divisible by run.replicas ({run['replicas']})")
    grid = run["grid"]
    if grid != "auto" and not (isinstance(grid, list) and len(grid) == 2 and all(type(g) is int and g > 0
                                                                                for g in grid)):
        raise ValueError(f"expected run.grid \"auto\" or [rows, cols], got {grid!r}")
    return config


def stage_specs(stages: Sequence[Mapping[str, Any]]) -> list[StageSpec]:
    """The model's stages as :class:`StageSpec` (``lambda`` in TOML is ``lam`` here)."""
    if not isinstance(stages, list) or not stages:
        raise ValueError("expected model.stages as one or more [[model.stages]] tables, got none")
    specs = []
    for s, stage in enumerate(stages):
        if not isinstance(stage, Mapping):
            raise ValueError(f"expected model.stages[{s}] to be a table, got {stage!r}")
        unknown = sorted(set(stage) - _STAGE_KEYS)
        missing = sorted({"k", "maps", "pool"} - set(stage))
        if unknown or missing:
            raise ValueError(f"model.stages[{s}]: unknown keys {unknown}, missing keys {missing}; "
                             f"expected keys among {sorted(_STAGE_KEYS)} with k, maps and pool required")
        args = {("lam" if key == "lambda" else key): value for key, value in stage.items()}
        specs.append(StageSpec(**args))
    return specs


def _stage_table(spec: StageSpec) -> dict[str, Any]:
    """A stage as its TOML table, every key written out (``lam`` is ``lambda`` there)."""
    return {("lambda" if key == "lam" else key): value for key, value in spec.as_dict().items()}


def _parse_value(text: str) -> Any:
    """A TOML value (``0.1``, ``"adagrad"``, ``[2, 1]``, ``true``); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` assignments (dotted keys; list items by index, e.g.
    ``model.stages.0.maps=4``) to a raw configuration, in place; returns it."""
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key:
            raise ValueError(f"expected --set key=value, got {assignment!r}")
        path = key.strip().split(".")
        node: Any = raw
        for depth, part in enumerate(path[:-1]):
            if isinstance(node, list):
                node = node[_index(part, node, key)]
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ValueError(f"--set {key}: {'.'.join(path[:depth + 1])} is a value, not a table or list")
        last = path[-1]
        if isinstance(node, list):
            node[_index(last, node, key)] = _parse_value(text.strip())
        else:
            node[last] = _parse_value(text.strip())
    return raw


def _index(part: str, node: list, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ValueError(f"--set {key}: expected an index in range({len(node)}), got {part!r}")
    return int(part)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a TOML file, apply ``overrides`` and return the checked effective configuration."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no configuration file {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_config(apply_overrides(raw, overrides))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def to_toml(config: Mapping[str, Any]) -> str:
    """The configuration as TOML text that :func:`load_config` reads back unchanged."""
    lines: list[str] = []
    for table in ("model", "train", "data", "run"):
        values = config.get(table, {})
        lines.append(f"[{table}]")
        lines += [f"{key} = {_toml_value(v)}" for key, v in values.items() if key != "stages"]
        for stage in values.get("stages", []) if table == "model" else []:
            lines.append("\n[[model.stages]]")
            lines += [f"{key} = {_toml_value(v)}" for key, v in stage.items()]
        lines.append("")
    return "\n".join(lines)
