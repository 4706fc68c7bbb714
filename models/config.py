"""Training configurations: TOML files with four tables, defaults for every key, dotted
``--set key=value`` overrides, checked in one place and held as frozen dataclasses
(:class:`Config`: ``config.train.lr``, ``config.model.stages[0].k``), written back as TOML
(:meth:`Config.to_toml`) and stored in checkpoints as plain tables (:meth:`Config.as_dict`).

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
    source = "bundled"           # or "folder", "shards", "video", "cifar10", "stl10"

    [run]
    grid = "auto"                # or [rows, cols] per replica
    replicas = 1

See docs/training.md for every key.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .optim import OPTIMIZERS, Schedule, check_hyper, check_storage
from .precision import ROUNDINGS, STORAGE

__all__ = ["Config", "DataConfig", "DEFAULTS", "ModelConfig", "NORMS", "RunConfig", "StageSpec", "TrainConfig",
           "apply_overrides", "load_config", "parse_config", "stage_specs"]


#: Which filters a stage holds at unit norm (see :meth:`models.autoencoder.SparseAutoencoder.project`).
NORMS = ("none", "encoder", "decoder", "both")


@dataclass(frozen=True)
class StageSpec:
    """Sizes of one stage.

    Attributes
    ----------
    k : int
        Receptive field side of the filtering layer.
    maps : int
        Filters per output location.
    pool : int
        L2 pooling window side.
    lcn : int
        Local contrast normalisation window side (odd); 0 for none.
    stride : int
        Filtering stride.
    lam : float
        Sparsity weight lambda of the stage's objective.
    eps : float
        Smoothing inside the pooling's square root.
    tied : bool
        Decoder weights are the encoder's (W2 = W1^T per location).
    norm : str
        Filters held at unit norm: one of :data:`NORMS`.
    """

    k: int
    maps: int
    pool: int
    lcn: int = 5
    stride: int = 1
    lam: float = 0.1
    eps: float = 1e-4
    tied: bool = False
    norm: str = "none"

    def __post_init__(self) -> None:
        ints = {"k": self.k, "maps": self.maps, "pool": self.pool, "stride": self.stride, "lcn": self.lcn}
        if any(type(v) is not int for v in ints.values()) or min(self.k, self.maps, self.pool, self.stride) < 1:
            raise ValueError(f"expected positive integers k, maps, pool, stride and an integer lcn, got {ints}")
        if self.lcn < 0 or (self.lcn and self.lcn % 2 == 0):
            raise ValueError(f"expected lcn 0 (none) or an odd window side, got {self.lcn}")
        if not self.lam >= 0 or not self.eps > 0:
            raise ValueError(f"expected lambda >= 0 and eps > 0, got lambda={self.lam}, eps={self.eps}")
        if type(self.tied) is not bool or self.norm not in NORMS:
            raise ValueError(f"expected tied true or false and norm one of {NORMS}, got tied={self.tied!r}, "
                             f"norm={self.norm!r}")

    def as_dict(self) -> dict[str, Any]:
        """The spec as a plain dict (``lam`` as the field is named)."""
        return asdict(self)

    def as_table(self) -> dict[str, Any]:
        """The spec as its TOML table, every key written out (``lam`` is ``lambda`` there)."""
        return {("lambda" if key == "lam" else key): value for key, value in self.as_dict().items()}


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: the input (H, W, C), the weights' seed and dtype, the stages bottom first,
    and the input's preprocessing: local contrast normalisation (``input_lcn``: the window
    side, 0 for none), then ZCA whitening (``whiten``: the filter side, 0 for none; ``whiten_eps``)."""

    input: tuple[int, int, int]
    seed: int
    dtype: str
    stages: tuple[StageSpec, ...]
    whiten: int = 0
    whiten_eps: float = 0.1
    input_lcn: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """``[train]``: see docs/training.md for every key."""

    mode: str
    steps: int
    batch: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    adagrad_eps: float
    schedule: str
    warmup: int
    final_lr: float
    decay_factor: float
    decay_every: int
    log_every: int
    checkpoint_every: int
    keep_checkpoints: int
    on_nonfinite: str
    heldout_every: int = 100
    tensorboard: bool = False
    state_dtype: str = "float32"
    state_rounding: str = "nearest"
    joint_update: str = "together"

    @cached_property
    def lr_schedule(self) -> Schedule:
        """The learning rate at each step of a phase (built, and so checked, once)."""
        return Schedule(self.lr, self.schedule, self.steps, self.warmup, self.final_lr, self.decay_factor,
                        self.decay_every)


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: the source and its own keys (checked by :func:`models.data.make_dataset`)."""

    source: str
    options: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The table as TOML holds it (a new dict)."""
        return {"source": self.source, **copy.deepcopy(dict(self.options))}


@dataclass(frozen=True)
class RunConfig:
    """``[run]``: the grid of one replica (None: "auto", balanced over the ranks), the
    replicas (data parallel groups) and the array backend."""

    grid: tuple[int, int] | None
    replicas: int
    backend: str


@dataclass(frozen=True)
class Config:
    """An effective configuration: every key set, every value checked (:func:`parse_config`)."""

    model: ModelConfig
    train: TrainConfig
    data: DataConfig
    run: RunConfig

    def as_dict(self) -> dict[str, Any]:
        """The four tables as TOML holds them (what :func:`parse_config` reads back unchanged)."""
        model = self.model
        return {
            "model": {"input": list(model.input), "seed": model.seed, "dtype": model.dtype,
                      "input_lcn": model.input_lcn, "whiten": model.whiten, "whiten_eps": model.whiten_eps,
                      "stages": [spec.as_table() for spec in model.stages]},
            "train": {key: getattr(self.train, key) for key in DEFAULTS["train"]},
            "data": self.data.as_dict(),
            "run": {"grid": "auto" if self.run.grid is None else list(self.run.grid), "replicas": self.run.replicas,
                    "backend": self.run.backend},
        }

    def to_toml(self) -> str:
        """The configuration as TOML text that :func:`load_config` reads back unchanged."""
        return to_toml(self.as_dict())


#: Every key a configuration may hold, with its default (``model.stages`` and ``data`` are
#: checked by :class:`StageSpec` and :func:`models.data.make_dataset`).
DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"input": [32, 32, 3], "seed": 0, "dtype": "float32", "input_lcn": 0, "whiten": 0, "whiten_eps": 0.1,
              "stages": []},
    "train": {
        "mode": "greedy", "steps": 100, "batch": 32, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
        "weight_decay": 0.0, "adagrad_eps": 1e-8, "schedule": "constant", "warmup": 0, "final_lr": 0.0,
        "decay_factor": 0.5, "decay_every": 1000, "log_every": 1, "checkpoint_every": 0, "keep_checkpoints": 2,
        "on_nonfinite": "stop", "heldout_every": 100, "tensorboard": False, "state_dtype": "float32",
        "state_rounding": "nearest", "joint_update": "together",
    },
    "data": {"source": "bundled"},
    "run": {"grid": "auto", "replicas": 1, "backend": "numpy"},
}

_STAGE_KEYS = {"k", "maps", "pool", "lcn", "stride", "lambda", "eps", "tied", "norm"}
_CHOICES = {("train", "mode"): ("greedy", "joint"), ("train", "on_nonfinite"): ("stop", "skip"), ("train", "optimizer"): OPTIMIZERS,
            ("train", "schedule"): Schedule.KINDS, ("model", "dtype"): ("float32", "float64"),
            ("run", "backend"): ("numpy", "cupy"), ("train", "state_dtype"): STORAGE,
            ("train", "state_rounding"): ROUNDINGS, ("train", "joint_update"): ("together", "by_stage")}


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


def parse_config(raw: Mapping[str, Any]) -> Config:
    """Merge ``raw`` (as read from TOML, or :meth:`Config.as_dict`) over :data:`DEFAULTS`,
    check every value and return the effective configuration. The one place where a
    configuration is checked: a ValueError names the key, what was expected and what was given."""
    tables = _checked_tables(raw)
    model, train, data, run = (tables[name] for name in ("model", "train", "data", "run"))
    config = Config(
        ModelConfig(tuple(model["input"]), model["seed"], model["dtype"], tuple(stage_specs(model["stages"])),
                    model["whiten"], float(model["whiten_eps"]), model["input_lcn"]),
        TrainConfig(**train),
        DataConfig(data["source"], MappingProxyType({k: copy.deepcopy(v) for k, v in data.items() if k != "source"})),
        RunConfig(None if run["grid"] == "auto" else tuple(run["grid"]), run["replicas"], run["backend"]))
    try:
        config.train.lr_schedule  # noqa: B018 (built once: checks and caches it)
    except ValueError as exc:
        raise ValueError(f"train.lr, warmup, final_lr, decay_factor or decay_every out of range: {exc}") from None
    return config


def _checked_tables(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` merged over :data:`DEFAULTS` and checked, as new nested dicts (stages as
    tables with every key)."""
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
    stage_specs(model["stages"])  # checked here: the first refusal wins
    side = model["whiten"]
    if side < 0 or (side and (side % 2 == 0 or side >= min(model["input"][:2]))) or not model["whiten_eps"] > 0:
        raise ValueError(f"expected model.whiten 0 (none) or an odd side smaller than the input, and "
                         f"model.whiten_eps > 0, got {side} and {model['whiten_eps']}")
    side = model["input_lcn"]
    if side < 0 or (side and (side % 2 == 0 or side >= min(model["input"][:2]))):
        raise ValueError(f"expected model.input_lcn 0 (none) or an odd window side smaller than the input, got {side}")
    if train["heldout_every"] < 0:
        raise ValueError(f"expected train.heldout_every >= 0 (0: never), got {train['heldout_every']}")
    if train["keep_checkpoints"] < 1 or train["checkpoint_every"] < 0:
        raise ValueError(f"expected train.keep_checkpoints >= 1 and train.checkpoint_every >= 0 (0: at the end "
                         f"only), got {train['keep_checkpoints']} and {train['checkpoint_every']}")
    try:
        check_storage(train["state_dtype"], train["state_rounding"], [model["dtype"]])
    except ValueError as exc:
        raise ValueError(f"train.state_dtype, state_rounding or model.dtype do not fit together: {exc}") from None
    try:
        check_hyper(train["momentum"], train["weight_decay"], train["adagrad_eps"])
    except ValueError as exc:
        raise ValueError(f"train.momentum, weight_decay or adagrad_eps out of range: {exc}") from None
    for key in ("steps", "batch", "log_every", "replicas"):
        table = run if key == "replicas" else train
        if table[key] < 1:
            raise ValueError(f"expected {'run' if key == 'replicas' else 'train'}.{key} >= 1, got {table[key]}")
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


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
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
    """Configuration tables (:meth:`Config.as_dict`) as TOML text that :func:`load_config`
    reads back unchanged."""
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
