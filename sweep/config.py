"""Typed configuration: Hydra composes `configs/`, this module turns it into frozen dataclasses.

Usage::

    cfg = load_config(["task=adding", "grid.lr=[0.01,0.1]"])   # compose + convert + validate
    cfg.grid.settings()                                         # every grid setting, as dicts

All validation happens here, once, at the entry point; everything downstream receives plain
dataclasses and never a ``DictConfig``. Every problem raises :class:`~sweep.errors.UserError`
with a one-line message that names the key, the rule and the value.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from sweep.devices import is_device_string
from sweep.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# The grid axes every sweep has; any other key under `grid` names another config key to sweep.
BASE_AXES = ("lr", "clip", "batch_size")


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class DigitsTask:
    """scikit-learn's 8x8 handwritten digits, read row by row (8 steps x 8 features, 10 classes)."""

    name: str = "digits"
    val_fraction: float = 0.25
    data_seed: int = 0


@dataclass(frozen=True)
class AddingTask:
    """Pascanu et al. (2013) adding problem (regression, MSE, correct when sq. error < tolerance)."""

    name: str = "adding"
    length: int = 50
    n_train: int = 10000
    n_val: int = 2000
    tolerance: float = 0.04
    data_seed: int = 0


@dataclass(frozen=True)
class TemporalOrderTask:
    """Pascanu et al. (2013) temporal order problem (6 one-hot symbols, 4 classes)."""

    name: str = "temporal_order"
    length: int = 50
    n_train: int = 10000
    n_val: int = 2000
    data_seed: int = 0


@dataclass(frozen=True)
class EchoTask:
    """Delayed echo, a per-step task: at every step output the symbol seen `delay` steps earlier."""

    name: str = "echo"
    length: int = 20
    delay: int = 3
    symbols: int = 4
    n_train: int = 2000
    n_val: int = 500
    data_seed: int = 0


@dataclass(frozen=True)
class VectorSumTask:
    """Vector regression: a fixed random projection of the sequence's scaled sum (MSE, tolerance)."""

    name: str = "vector_sum"
    length: int = 20
    features: int = 4
    dim: int = 8
    n_train: int = 2000
    n_val: int = 500
    tolerance: float = 0.04
    data_seed: int = 0


@dataclass(frozen=True)
class FileTask:
    """The user's sequences from an .npz file or a long-format .csv/.parquet table."""

    name: str = "file"
    path: Optional[str] = None
    val_path: Optional[str] = None
    kind: str = "auto"
    per_step: Optional[bool] = None
    val_fraction: float = 0.2
    data_seed: int = 0
    tolerance: float = 0.04
    normalize: bool = True
    seq_column: str = "seq"
    step_column: str = "step"
    label_columns: str = "label"
    feature_columns: Optional[str] = None


@dataclass(frozen=True)
class TextTask:
    """Text classification from a folder in the IMDB reviews layout (tokens -> embedding)."""

    name: str = "text"
    path: Optional[str] = None
    vocab_size: int = 10000
    max_len: int = 200
    max_per_class: Optional[int] = None
    data_seed: int = 0


TASK_TYPES: dict[str, type] = {
    "digits": DigitsTask,
    "adding": AddingTask,
    "temporal_order": TemporalOrderTask,
    "echo": EchoTask,
    "vector_sum": VectorSumTask,
    "file": FileTask,
    "text": TextTask,
}


# --------------------------------------------------------------------------- model, optimizer


@dataclass(frozen=True)
class ModelConfig:
    """Recurrent network: `name` is the cell (lstm or gru)."""

    name: str = "lstm"
    hidden_size: int = 64
    layers: int = 2
    dropout: float = 0.0
    bidirectional: bool = False
    embedding_dim: int = 32
    forget_bias: float = 0.0


MODEL_NAMES = ("lstm", "gru")


@dataclass(frozen=True)
class SGDConfig:
    name: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    l2: float = 0.0


@dataclass(frozen=True)
class AdamConfig:
    name: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    l2: float = 0.0


@dataclass(frozen=True)
class AdamWConfig:
    name: str = "adamw"
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01
    l2: float = 0.0


@dataclass(frozen=True)
class RMSpropConfig:
    name: str = "rmsprop"
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    weight_decay: float = 0.0
    l2: float = 0.0


OPTIMIZER_TYPES: dict[str, type] = {
    "sgd": SGDConfig,
    "adam": AdamConfig,
    "adamw": AdamWConfig,
    "rmsprop": RMSpropConfig,
}


@dataclass(frozen=True)
class ConstantSchedule:
    name: str = "constant"


@dataclass(frozen=True)
class WarmupSchedule:
    """Linear warmup from lr / warmup_steps to lr over `warmup_steps` steps, then constant."""

    name: str = "warmup"
    warmup_steps: int = 100


@dataclass(frozen=True)
class CosineSchedule:
    """Optional linear warmup, then cosine decay from lr to `min_lr_ratio * lr` at the last step."""

    name: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0


@dataclass(frozen=True)
class OneCycleSchedule:
    """torch.optim.lr_scheduler.OneCycleLR (cosine annealing, two phases), without momentum cycling."""

    name: str = "onecycle"
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4


SCHEDULE_TYPES: dict[str, type] = {
    "constant": ConstantSchedule,
    "warmup": WarmupSchedule,
    "cosine": CosineSchedule,
    "onecycle": OneCycleSchedule,
}


# --------------------------------------------------------------------------- grid, detect, study


@dataclass(frozen=True)
class GridConfig:
    """The swept settings: the product of all axes (lr x clip x batch_size x extra axes)."""

    lr: tuple[float, ...] = (0.01, 0.1)
    clip: tuple[Optional[float], ...] = (None,)
    batch_size: tuple[int, ...] = (32,)
    # Further axes: dotted config key -> values, e.g. {"schedule.warmup_steps": (0, 100)}.
    extra: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def axes(self) -> dict[str, tuple[Any, ...]]:
        """All axes in order: lr, clip, batch_size, then the extra ones."""
        return {"lr": self.lr, "clip": self.clip, "batch_size": self.batch_size, **dict(self.extra)}

    def settings(self) -> list[dict[str, Any]]:
        """Every grid setting as a dict {axis: value}, in grid order."""
        axes = self.axes()
        return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


@dataclass(frozen=True)
class DetectConfig:
    """Collapse-detection thresholds (definitions in the README and DESIGN.md)."""

    drop: float = 0.5
    patience: int = 3
    min_gain: float = 0.05
    spike_factor: float = 1.5
    constant_frac: float = 0.95
    alpha: float = 0.01  # false-alarm budget of the noise-aware calls (learned: alpha/2, drop: alpha)


@dataclass(frozen=True)
class StudyConfig:
    name: str = "default"
    storage: Optional[str] = None  # resolved to an SQLite URL under results_dir when None
    heartbeat_seconds: int = 10  # a running trial's worker records a heartbeat this often
    grace_seconds: int = 60  # a trial whose heartbeat is older is presumed orphaned


@dataclass(frozen=True)
class Config:
    task: Any
    model: ModelConfig
    optimizer: Any
    schedule: Any
    grid: GridConfig
    detect: DetectConfig
    study: StudyConfig
    seeds: int = 5
    epochs: int = 40
    device: str = "auto"
    workers: Union[int, str] = "auto"
    packing: str = "auto"
    checkpoint_every: int = 10
    checkpoint_minutes: float = 5.0
    results_dir: str = "results"

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (stored in the study; read back with `config_from_dict`)."""
        d = dataclasses.asdict(self)
        d["grid"] = grid_to_dict(self.grid)
        return d

    @property
    def study_dir(self) -> Path:
        return Path(self.results_dir) / self.study.name

    def storage_url(self) -> str:
        """The Optuna storage URL; the default is an SQLite file under `results_dir`."""
        if self.study.storage:
            return self.study.storage
        return "sqlite:///" + str((Path(self.results_dir) / "lrsweep.db").resolve())


def grid_to_dict(grid: GridConfig) -> dict[str, Any]:
    d: dict[str, Any] = {"lr": list(grid.lr), "clip": list(grid.clip), "batch_size": list(grid.batch_size)}
    for key, values in grid.extra:
        d[key] = list(values)
    return d


# --------------------------------------------------------------------------- conversion


def _fail(key: str, rule: str, value: Any, fix: str = "") -> UserError:
    msg = f"{key}: {rule}, got {value!r}"
    error = UserError(msg + (f"; {fix}" if fix else ""))
    error.key, error.needs_fix = key, not fix  # type: ignore[attr-defined]  # see _with_default
    return error


def _with_default(error: UserError, default: Any) -> UserError:
    """`error`, told how to fix it by the key's default when it does not say so yet."""
    if not getattr(error, "needs_fix", False) or default is dataclasses.MISSING:
        return error
    shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
    return UserError(f"{error}; e.g. {error.key}={shown} (the default)")  # type: ignore[attr-defined]


def _default_of(cfg: Any, key: str) -> Any:
    """The dataclass default of dotted `key` in `cfg` (dataclasses.MISSING when there is none)."""
    node = cfg
    *parents, name = key.split(".")
    for part in parents:
        node = getattr(node, part, None)
    if node is None or not dataclasses.is_dataclass(node):
        return dataclasses.MISSING
    return next((f.default for f in dataclasses.fields(node) if f.name == name), dataclasses.MISSING)


def _convert_scalar(tp: Any, value: Any, key: str) -> Any:
    """Convert one leaf value to the field type `tp`, or raise a UserError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        errors = []
        for arg in args:
            try:
                return _convert_scalar(arg, value, key)
            except UserError as e:
                errors.append(e)
        raise errors[-1]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _fail(key, "must be true or false", value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()
        ):
            raise _fail(key, "must be an integer", value)
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(key, "must be a number", value)
        try:
            value = float(value)
        except OverflowError:  # an integer with hundreds of digits
            raise _fail(key, "must be a finite number", value) from None
        if not math.isfinite(value):
            raise _fail(key, "must be a finite number", value)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _fail(key, "must be a string", value)
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config field type {tp} at {key}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass `cls` from mapping `data`, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise _fail(prefix, "must be a mapping of keys", data)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {prefix}.{close[0]}?" if close else f"valid keys: {', '.join(names)}"
            raise UserError(f"{prefix}.{key}: unknown key for {prefix} '{data.get('name', prefix)}'; {hint}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            try:
                kwargs[f.name] = _convert_scalar(hints[f.name], data[f.name], f"{prefix}.{f.name}")
            except UserError as e:
                raise _with_default(e, f.default) from None
    return cls(**kwargs)


def _build_named(registry: dict[str, type], data: Any, group: str) -> Any:
    if not isinstance(data, dict) or "name" not in data:
        raise _fail(group, "must be a config group with a name", data, f"use {group}=NAME")
    name = data["name"]
    if name not in registry:
        raise UserError(
            f"{group}.name: unknown {group} {name!r}; valid {group}s: {', '.join(sorted(registry))}"
        )
    return _build(registry[name], data, group)


# How to write each base axis, for messages.
GRID_EXAMPLES = {
    "grid.lr": "grid.lr='[0.001,0.01,0.1]'",
    "grid.clip": "grid.clip='[null,1.0]' (null: no clipping)",
    "grid.batch_size": "grid.batch_size='[32,128]'",
}


def _as_list(value: Any, key: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise _fail(key, "must list at least one value", list(value),
                        "e.g. " + GRID_EXAMPLES.get(key, f"{key}='[VALUE1,VALUE2]'"))
        return list(value)
    return [value]  # a single value is a one-point axis


def _axis_values(flat: dict[str, Any], axis: str, tp: Any, default: list[Any]) -> tuple[Any, ...]:
    """The values of one base grid axis, converted to `tp`; a wrong type says how to write it."""
    key = f"grid.{axis}"
    values = _as_list(flat.pop(axis, default), key)
    try:
        return tuple(_convert_scalar(tp, v, key) for v in values)
    except UserError as e:
        raise UserError(f"{e}; e.g. {GRID_EXAMPLES[key]}") from None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _build_grid(data: Any, base: dict[str, Any]) -> GridConfig:
    if not isinstance(data, dict):
        raise _fail("grid", "must be a mapping of axis -> list of values", data)
    flat = _flatten(data)
    lr = _axis_values(flat, "lr", float, [0.01])
    clip = _axis_values(flat, "clip", Optional[float], [None])
    batch = _axis_values(flat, "batch_size", int, [32])
    extra = []
    for path, values in flat.items():
        target = _lookup(base, path)
        if target is _MISSING or isinstance(target, dict) or path.split(".")[0] in ("grid", "study"):
            raise UserError(
                f"grid.{path}: not a config key that can be swept; an extra grid axis must name "
                f"an existing key such as grid.schedule.warmup_steps or grid.model.hidden_size"
            )
        extra.append((path, tuple(_as_list(values, f"grid.{path}"))))
    return GridConfig(lr=lr, clip=clip, batch_size=batch, extra=tuple(extra))


_MISSING = object()


def _lookup(d: dict[str, Any], path: str) -> Any:
    node: Any = d
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def config_from_dict(data: dict[str, Any]) -> Config:
    """Convert and validate a plain (resolved) config mapping; raises UserError on any problem."""
    data = dict(data)
    known = {f.name for f in dataclasses.fields(Config)}
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean {close[0]}?" if close else f"valid keys: {', '.join(sorted(known))}"
            raise UserError(f"{key}: unknown config key; {hint}")
    if not isinstance(data.get("model"), dict):
        raise _fail("model", "must be a config group", data.get("model"), "use model=lstm or model=gru")
    model = _build(ModelConfig, data["model"], "model")
    grid = _build_grid(data.get("grid", {}), data)
    study = _build(StudyConfig, data.get("study", {}), "study")
    scalars = {}
    hints = typing.get_type_hints(Config)
    for key in ("seeds", "epochs", "device", "packing", "checkpoint_every", "checkpoint_minutes", "results_dir"):
        if key in data:
            try:
                scalars[key] = _convert_scalar(hints[key], data[key], key)
            except UserError as e:
                raise _with_default(e, _default_of(Config, key)) from None
    workers = data.get("workers", "auto")
    if workers != "auto":
        try:
            workers = _convert_scalar(int, int(workers) if isinstance(workers, str) else workers, "workers")
        except (UserError, ValueError):
            raise _fail("workers", "must be a whole number >= 1 or auto", workers, "e.g. workers=2 or workers=auto") from None
    cfg = Config(
        task=_build_named(TASK_TYPES, data.get("task"), "task"),
        model=model,
        optimizer=_build_named(OPTIMIZER_TYPES, data.get("optimizer"), "optimizer"),
        schedule=_build_named(SCHEDULE_TYPES, data.get("schedule", {"name": "constant"}), "schedule"),
        grid=grid,
        detect=_build(DetectConfig, data.get("detect", {}), "detect"),
        study=study,
        workers=workers,
        **scalars,
    )
    validate(cfg)
    # Each extra axis value must be valid where it lands: apply every value once.
    for path, values in cfg.grid.extra:
        for value in values:
            apply_overrides(cfg, {path: value})
    return cfg


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Return `cfg` with dotted-key overrides applied (extra grid axes), converted and validated."""
    if not overrides:
        return cfg
    data = cfg.to_dict()
    for path, value in overrides.items():
        node = data
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    data["grid"] = {}  # the grid itself is not re-validated per setting
    out = config_from_dict(data)
    return dataclasses.replace(out, grid=cfg.grid)


# --------------------------------------------------------------------------- validation


def _check(ok: bool, key: str, rule: str, value: Any, fix: str = "") -> None:
    if not ok:
        raise _fail(key, rule, value, fix)


def validate(cfg: Config) -> None:
    """Value rules for every key (types were checked during conversion). A rule's message that
    gives no fix of its own suggests the key's default."""
    try:
        _check_values(cfg)
    except UserError as e:
        raise _with_default(e, _default_of(cfg, getattr(e, "key", ""))) from None


def _check_values(cfg: Config) -> None:
    g = cfg.grid
    for lr in g.lr:
        _check(lr > 0, "grid.lr", "every learning rate must be > 0", lr, "e.g. " + GRID_EXAMPLES["grid.lr"])
    for c in g.clip:
        _check(c is None or c > 0, "grid.clip", "every clip norm must be > 0 or null (no clipping)", c,
               "e.g. " + GRID_EXAMPLES["grid.clip"])
    for b in g.batch_size:
        _check(b >= 1, "grid.batch_size", "every batch size must be >= 1", b, "e.g. " + GRID_EXAMPLES["grid.batch_size"])
    for name, values in g.axes().items():
        _check(len(set(map(repr, values))) == len(values), f"grid.{name}", "values must not repeat", list(values),
               "list each value once")
    _check(cfg.seeds >= 1, "seeds", "must be >= 1", cfg.seeds, "e.g. seeds=5")
    _check(cfg.seeds <= 10000, "seeds", "must be <= 10000", cfg.seeds)
    _check(cfg.epochs >= 1, "epochs", "must be >= 1", cfg.epochs, "e.g. epochs=30")
    if cfg.workers != "auto":
        _check(cfg.workers >= 1, "workers", "must be >= 1 or auto", cfg.workers, "e.g. workers=2")
    _check(cfg.packing in ("auto", "on", "off"), "packing", "must be auto, on or off", cfg.packing)
    _check(
        is_device_string(cfg.device),
        "device", "must be auto, cpu, cuda or cuda:N (N a GPU index without leading zeros)", cfg.device,
        "e.g. device=auto",
    )
    _check(bool(cfg.results_dir.strip()), "results_dir", "must name a folder", cfg.results_dir,
           "e.g. results_dir=results")
    _check(cfg.checkpoint_every >= 0, "checkpoint_every", "must be >= 0 (0: off)", cfg.checkpoint_every)
    _check(cfg.checkpoint_minutes >= 0, "checkpoint_minutes", "must be >= 0 (0: off)", cfg.checkpoint_minutes)

    m = cfg.model
    _check(m.name in MODEL_NAMES, "model.name", f"must be one of {', '.join(MODEL_NAMES)}", m.name)
    _check(m.hidden_size >= 1, "model.hidden_size", "must be >= 1", m.hidden_size)
    _check(m.layers >= 1, "model.layers", "must be >= 1", m.layers)
    _check(0 <= m.dropout < 1, "model.dropout", "must be in [0, 1)", m.dropout)
    _check(m.embedding_dim >= 1, "model.embedding_dim", "must be >= 1", m.embedding_dim)

    o = cfg.optimizer
    _check(o.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0", o.weight_decay)
    _check(o.l2 >= 0, "optimizer.l2", "must be >= 0", o.l2)
    if hasattr(o, "momentum"):
        _check(0 <= o.momentum < 1, "optimizer.momentum", "must be in [0, 1)", o.momentum)
    if getattr(o, "nesterov", False):
        _check(o.momentum > 0, "optimizer.nesterov", "needs optimizer.momentum > 0", o.momentum)
    for beta in ("beta1", "beta2", "alpha"):
        if hasattr(o, beta):
            _check(0 <= getattr(o, beta) < 1, f"optimizer.{beta}", "must be in [0, 1)", getattr(o, beta))
    if hasattr(o, "eps"):
        _check(o.eps > 0, "optimizer.eps", "must be > 0", o.eps)

    d = cfg.detect
    for key in ("drop", "min_gain", "constant_frac"):
        v = getattr(d, key)
        _check(0 < v < 1, f"detect.{key}", "must be in (0, 1)", v)
    _check(0 < d.alpha <= 0.2, "detect.alpha", "must be in (0, 0.2]", d.alpha)
    _check(d.patience >= 1, "detect.patience", "must be >= 1 epoch", d.patience)
    _check(d.spike_factor > 1, "detect.spike_factor", "must be > 1", d.spike_factor)

    _check(cfg.study.heartbeat_seconds >= 1, "study.heartbeat_seconds", "must be >= 1", cfg.study.heartbeat_seconds)
    _check(
        cfg.study.grace_seconds > cfg.study.heartbeat_seconds, "study.grace_seconds",
        "must be > study.heartbeat_seconds", cfg.study.grace_seconds,
    )
    _check(bool(cfg.study.name.strip()), "study.name", "must not be empty", cfg.study.name, "e.g. study.name=digits-lstm-2")
    _check(
        not any(ch in cfg.study.name for ch in "/\\") and cfg.study.name not in (".", "..")
        and cfg.study.name.isprintable(),
        "study.name", "must be usable as a folder name (no '/', '\\' or control characters)", cfg.study.name,
        "e.g. study.name=digits-lstm-2",
    )
    t = cfg.task
    if hasattr(t, "val_fraction"):
        _check(0 < t.val_fraction < 1, "task.val_fraction", "must be in (0, 1)", t.val_fraction)
    if hasattr(t, "length"):
        _check(t.length >= 10, "task.length", "must be >= 10 steps", t.length)
    for key in ("n_train", "n_val"):
        if hasattr(t, key):
            _check(getattr(t, key) >= 2, f"task.{key}", "must be >= 2", getattr(t, key))
    if hasattr(t, "tolerance"):
        _check(t.tolerance > 0, "task.tolerance", "must be > 0", t.tolerance)
    if hasattr(t, "path"):  # existence and contents are checked when the data is read
        what, example = ("a folder in the IMDB layout", "aclImdb") if t.name == "text" else ("a data file", "seqs.npz")
        _check(bool(t.path), "task.path", f"must name {what}", t.path, f"e.g. task={t.name} task.path=/data/{example}")
    if hasattr(t, "val_path"):
        _check(t.val_path is None or bool(t.val_path), "task.val_path",
               "must name a file, or be null to split off task.val_fraction", t.val_path)
    if hasattr(t, "kind"):
        _check(t.kind in ("auto", "classification", "regression"), "task.kind",
               "must be auto, classification or regression", t.kind)
    if hasattr(t, "label_columns"):
        _check(bool(t.label_columns.strip()), "task.label_columns", "must name at least one column", t.label_columns)
    if hasattr(t, "delay"):
        _check(1 <= t.delay < t.length, "task.delay", f"must be in [1, task.length={t.length})", t.delay)
    if hasattr(t, "symbols"):
        _check(t.symbols >= 2, "task.symbols", "must be >= 2", t.symbols)
    for key in ("features", "dim"):
        if hasattr(t, key):
            _check(getattr(t, key) >= 1, f"task.{key}", "must be >= 1", getattr(t, key))
    if hasattr(t, "vocab_size"):
        _check(t.vocab_size >= 3, "task.vocab_size", "must be >= 3 (ids 0 and 1 are padding and unknown words)",
               t.vocab_size)
    if hasattr(t, "max_len"):
        _check(t.max_len >= 1, "task.max_len", "must be >= 1 token", t.max_len)
    if getattr(t, "max_per_class", None) is not None:
        _check(t.max_per_class >= 1, "task.max_per_class", "must be >= 1 or null (all files)", t.max_per_class)

    s = cfg.schedule
    if hasattr(s, "warmup_steps"):
        _check(s.warmup_steps >= 0, "schedule.warmup_steps", "must be >= 0 (0: no warmup)", s.warmup_steps)
    if hasattr(s, "min_lr_ratio"):
        _check(0 <= s.min_lr_ratio <= 1, "schedule.min_lr_ratio", "must be in [0, 1]", s.min_lr_ratio)
    if hasattr(s, "pct_start"):
        _check(0 < s.pct_start < 1, "schedule.pct_start", "must be in (0, 1)", s.pct_start)
    for key in ("div_factor", "final_div_factor"):
        if hasattr(s, key):
            _check(getattr(s, key) >= 1, f"schedule.{key}", "must be >= 1", getattr(s, key))


# --------------------------------------------------------------------------- comparability


def comparable_part(cfg: Config) -> dict[str, Any]:
    """The keys that fix what a stored result means: a study refuses a config that differs here.

    Grid axes, seeds, detection thresholds and execution keys (workers, device, packing,
    checkpointing, results_dir) may change between runs of the same study.
    """
    d = cfg.to_dict()
    part = {k: d[k] for k in ("task", "model", "optimizer", "schedule", "epochs")}
    flat = _flatten(part)
    for path, _ in cfg.grid.extra:  # swept keys vary by design
        flat.pop(path, None)
    return flat


def config_fingerprint(cfg: Config) -> str:
    return json.dumps(comparable_part(cfg), sort_keys=True)


# --------------------------------------------------------------------------- Hydra composition


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


GROUPS = ("task", "model", "optimizer", "schedule", "grid", "detect")


def compose(overrides: list[str]) -> Any:
    """Compose `configs/` with Hydra's compose API; Hydra's errors become one-line UserErrors."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    for ov in overrides:
        name = ov.split("=", 1)[0].lstrip("+~")
        if "=" in ov and name in GROUPS:
            choice = ov.split("=", 1)[1]
            options = _group_options(name)
            if choice not in options:
                raise UserError(f"{name}={choice}: unknown {name}; valid {name}s: {', '.join(options)}")
    for ov in overrides:  # one at a time, so that a syntax error names its override
        _check_syntax(ov)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="sweep"):
            return hydra_compose(config_name="config", overrides=list(overrides))
    except MissingConfigException as e:
        raise UserError(_one_line(str(e))) from None
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise UserError(_hydra_message(e, overrides)) from None


def _check_syntax(override: str) -> None:
    """Raise a UserError naming `override` when Hydra's override grammar cannot parse it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    key = override.split("=", 1)[0].lstrip("+~")
    if not key:
        raise UserError(f"{override!r}: no key before '='; write key=value, e.g. seeds=3")
    try:
        OverridesParser.create().parse_overrides([override])
    except HydraException as e:
        detail = _one_line(str(e).split("See https://", 1)[0])
        detail = detail.replace(f"Error parsing override {override!r} ", "")
        if detail.startswith("LexerNoViableAltException"):
            detail = "a character the override syntax does not allow, e.g. < > ( ) { } or a space"
        raise UserError(
            f"{key}: cannot parse the override {override!r} ({detail}); write key=value, lists as "
            f"key=[a,b], and quote a value with special characters for Hydra: \"{key}='...'\""
        ) from None


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def _hydra_message(error: BaseException, overrides: list[str]) -> str:
    text = str(error)
    cause = error.__cause__
    if "Could not override '" in text:
        key = text.split("Could not override '", 1)[1].split("'", 1)[0]
        full_key = getattr(cause, "full_key", None)  # model={a:1}: the unknown key is model.a
        key = full_key if isinstance(full_key, str) and full_key else key
        return f"{key}: unknown config key; {_suggest(key)}"
    if text.startswith("Ambiguous value for argument '"):
        arg = text.split("'", 2)[1]
        key, value = arg.split("=", 1)
        return f"{key}: {value!r} is ambiguous (a comma list without brackets); write a list as {key}='[{value}]'"
    if text.startswith("Could not append to config. An item is already at '"):
        key = text.split("'", 2)[1]
        return (f"{key}: already in the config, so '+{key}' cannot add it; set it with {key}=VALUE "
                f"(a leading + only adds keys the config does not have)")
    if text.startswith("Error merging override ") and cause is not None:
        arg = text[len("Error merging override "):].strip()
        key = arg.lstrip("+~").split("=", 1)[0]
        reason = _one_line(str(cause)).split(" full_key:", 1)[0]
        return f"{key}: cannot set {arg!r} ({reason}); see `sweep run --cfg job` for the form of {key}"
    return _one_line(text)


def _suggest(key: str) -> str:
    """'did you mean X?' from the keys of the default config, else a pointer to --cfg job."""
    try:
        from hydra import compose as hydra_compose
        from hydra import initialize_config_dir

        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="sweep"):
            keys = list(_flatten(resolve(hydra_compose(config_name="config"))))
    except Exception:
        keys = []
    close = difflib.get_close_matches(key, keys, n=1)
    return f"did you mean {close[0]}?" if close else "see `sweep run --cfg job` for the valid keys"


def resolve(composed: Any) -> dict[str, Any]:
    """The composed DictConfig as a plain dict with interpolations resolved."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(composed, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "config"
        reason = _one_line(str(e)).split(" full_key:", 1)[0]
        raise UserError(f"{key}: {reason}; an interpolation ${{...}} must name an existing key, "
                        f"see `sweep run --cfg job`") from None


def load_config(overrides: list[str]) -> Config:
    """Compose, convert and validate: the single entry point used by every subcommand."""
    return config_from_dict(resolve(compose(overrides)))


def user_set_keys(overrides: list[str]) -> set[str]:
    """The top-level dotted keys a user set explicitly on the command line."""
    return {ov.split("=", 1)[0].lstrip("+~") for ov in overrides if "=" in ov}


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
