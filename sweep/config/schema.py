"""The config schema: one dataclass per config node, each with its defaults and its own rules.

This module holds the top-level `Config` and its model, grid, study, `sweep find` and `sweep
refine` nodes; the other nodes' classes live beside it (`sweep.config.tasks`, `trainers`,
`optimizers`, `detect`, ...). `register()` stores them in Hydra's ConfigStore, and
configs/config.yaml and the option files under configs/<group>/ extend them (`defaults: -
base_<option>`), so OmegaConf types and merges every value, and every default is written once,
in these classes. Not typed by OmegaConf: `grid` (any config key may be an axis; `GridConfig` is
built by `sweep.config.convert.grid_from_mapping`, and configs/grid/default.yaml only documents
it), `trainer=function` (`base_function` is a mapping of `TargetTrainer`'s keys and defaults,
since every other key is the function's keyword argument), and a user's `_target_` model or
task node. `sweep.config.convert` turns a composed config into a `Config`.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.config.detect import DETECT_MEANINGS, DetectConfig  # noqa: F401  (part of the schema)
from sweep.config.optimizers import OPTIMIZERS, SCHEDULES, OptimizerConfig, ScheduleConfig  # noqa: F401
from sweep.config.rules import Checked, rule_error
from sweep.config.start import KeepConfig, StartConfig
from sweep.config.tasks import TASKS
from sweep.config.trainers import TRAINERS
from sweep.core.devices import is_device_string
from sweep.core.errors import UserError

# --------------------------------------------------------------------------- model (optimizers and
# schedules: sweep.config.optimizers)


@dataclass
class ModelConfig(Checked):
    """Recurrent network: optional embedding -> LSTM/GRU -> linear read-out; `name` is the cell."""

    name: str = "lstm"  # lstm or gru
    hidden_size: int = 64  # units per layer and direction
    layers: int = 2  # stacked recurrent layers
    dropout: float = 0.0  # dropout between stacked layers (0: off; needs layers >= 2)
    bidirectional: bool = False  # also read each sequence backwards
    embedding_dim: int = 32  # size of the token embedding (used only by token tasks, e.g. text)
    # added to the LSTM forget-gate bias at init (1.0 is a common choice; unused by GRUs)
    forget_bias: float = 0.0

    def check(self, prefix: str) -> None:
        self.require(
            self.name in MODEL_NAMES, prefix, "name", f"must be one of {', '.join(MODEL_NAMES)}"
        )
        self.require(self.hidden_size >= 1, prefix, "hidden_size", "must be >= 1")
        self.require(self.layers >= 1, prefix, "layers", "must be >= 1")
        self.require(0 <= self.dropout < 1, prefix, "dropout", "must be in [0, 1)")
        self.require(self.embedding_dim >= 1, prefix, "embedding_dim", "must be >= 1")


MODEL_NAMES = ("lstm", "gru")


# --------------------------------------------------------------------------- grid, detect, study


# How to write each base axis, for messages.
GRID_EXAMPLES = {
    "grid.lr": "grid.lr='[0.001,0.01,0.1]'",
    "grid.clip": "grid.clip='[null,1.0]' (null: no clipping)",
    "grid.batch_size": "grid.batch_size='[32,128]'",
}
DEFAULT_GRID = {"lr": [0.01, 0.03, 0.1, 0.3, 1.0], "clip": [None, 1.0], "batch_size": [32]}


@dataclass
class GridConfig:
    """The swept settings: the product of all axes (lr x clip x batch_size x extra axes).

    Built from the composed `grid` node by `sweep.config.convert.grid_from_mapping` (its values
    may be lists or single values, and any other config key may be an extra axis).
    """

    lr: tuple[float, ...] = tuple(DEFAULT_GRID["lr"])
    clip: tuple[float | None, ...] = tuple(DEFAULT_GRID["clip"])
    batch_size: tuple[int, ...] = tuple(DEFAULT_GRID["batch_size"])
    # Further axes: dotted config key -> values, e.g. (("schedule.warmup_steps", (0, 100)),).
    extra: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    lr_auto: bool = False  # grid.lr=auto: the learning rates come from a range test (`sweep find`)
    free: tuple[
        str, ...
    ] = ()  # extra axes that are parameters of a user's training, not config keys

    def axes(self) -> dict[str, tuple[Any, ...]]:
        """All axes in order: lr, clip, batch_size, then the extra ones."""
        return {"lr": self.lr, "clip": self.clip, "batch_size": self.batch_size, **dict(self.extra)}

    def settings(self) -> list[dict[str, Any]]:
        """Every grid setting as a dict {axis: value}, in grid order."""
        axes = self.axes()
        return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: list(values) for name, values in self.axes().items()}
        if self.lr_auto:
            out["lr"] = "auto"
        return out

    def check(self) -> None:
        for lr in self.lr:
            if not lr > 0:
                raise rule_error(
                    "grid.lr",
                    "every learning rate must be > 0",
                    lr,
                    "e.g. " + GRID_EXAMPLES["grid.lr"],
                )
        for c in self.clip:
            if not (c is None or c > 0):
                raise rule_error(
                    "grid.clip",
                    "every clip norm must be > 0 or null (no clipping)",
                    c,
                    "e.g. " + GRID_EXAMPLES["grid.clip"],
                )
        for b in self.batch_size:
            if b < 1:
                raise rule_error(
                    "grid.batch_size",
                    "every batch size must be >= 1",
                    b,
                    "e.g. " + GRID_EXAMPLES["grid.batch_size"],
                )
        for name, values in self.axes().items():
            if len(set(map(repr, values))) != len(values):
                raise rule_error(
                    f"grid.{name}", "values must not repeat", list(values), "list each value once"
                )


@dataclass
class FindConfig(Checked):
    """`sweep find` and `grid.lr=auto`: the learning-rate range test that proposes a grid."""

    lr_min: float = 1e-5  # the ramp's first learning rate ...
    lr_max: float = 10.0  # ... and its last (it stops earlier where the loss diverges)
    steps: int = 300  # optimizer steps of the ramp
    seeds: int = 3  # runs per clip value (seeds 0..seeds-1)
    diverge: float = 4.0  # diverged: the smoothed loss above this x its lowest value
    decades: float = 2.0  # the proposed grid spans this many decades below the divergence point

    def check(self, prefix: str) -> None:
        self.require(
            0 < self.lr_min < self.lr_max, prefix, "lr_min", "must be > 0 and below find.lr_max"
        )
        self.require(self.steps >= 20, prefix, "steps", "must be >= 20")
        self.require(self.seeds >= 1, prefix, "seeds", "must be >= 1")
        self.require(self.diverge > 1, prefix, "diverge", "must be > 1")
        self.require(self.decades > 0, prefix, "decades", "must be > 0")


@dataclass
class SignalsConfig(Checked):
    """The per-epoch signals that name why a run collapsed (docs/why-it-collapsed.md), recorded by
    the built-in loop: update/weight ratios every step; saturation, critical step size and logit
    size on a fixed probe batch."""

    enabled: bool = True  # record them (false: none of them, and no non-finite replay)
    probe_size: int = 64  # sequences of the probe batch (0: no probe signals)
    every: int = 1  # measure the probe signals every N epochs (always in the last epoch)

    def check(self, prefix: str) -> None:
        self.require(
            0 <= self.probe_size <= 100000, prefix, "probe_size", "must be 0 (off) to 100000"
        )
        self.require(self.every >= 1, prefix, "every", "must be >= 1", "e.g. signals.every=1")


@dataclass
class RefineConfig(Checked):
    """`sweep refine`: rounds of added learning rates and seeds until the safe LR is known (a
    learning rate a round adds gets the sweep's `seeds`, in its slice)."""

    factor: float = (
        10**0.25
    )  # done: the safe LR within this factor (1.78) below lr_at_10's upper 95% end
    max_runs: int = 60  # the most runs the study may hold after refining (every slice together)
    extra_seeds: int = 3  # seeds a round adds at a learning rate already tried
    max_seeds: int = 20  # never more seeds than this at one setting
    max_rounds: int = 10  # rounds at most

    def check(self, prefix: str) -> None:
        self.require(self.factor > 1, prefix, "factor", "must be > 1")
        self.require(self.max_runs >= 1, prefix, "max_runs", "must be >= 1")
        for name in ("extra_seeds", "max_seeds", "max_rounds"):
            self.require(getattr(self, name) >= 1, prefix, name, "must be >= 1")


@dataclass
class StudyConfig(Checked):
    """The Optuna study: its name and storage, and how dead workers are found."""

    # Optuna study name; null: <task>-<model>-<optimizer> (file tasks add the file's name)
    name: str | None = None
    storage: str | None = None  # Optuna storage URL; null: sqlite:///<results_dir>/lrsweep.db
    heartbeat_seconds: int = 10  # a running trial's worker records a heartbeat this often ...
    grace_seconds: int = 60  # ... and a trial whose heartbeat is older is reclaimed (other hosts)
    # a setting whose worker dies while running it (e.g. killed for memory) runs again this many
    # times; when its worker dies once more it is failed, with the reason, and not run again ...
    max_retries: int = 3
    retry_failed: bool = False  # ... unless this is true (the settings given up run again)

    def check(self, prefix: str) -> None:
        self.require(self.heartbeat_seconds >= 1, prefix, "heartbeat_seconds", "must be >= 1")
        self.require(self.max_retries >= 0, prefix, "max_retries", "must be >= 0")
        self.require(
            self.grace_seconds > self.heartbeat_seconds,
            prefix,
            "grace_seconds",
            "must be > study.heartbeat_seconds",
        )
        fix = "e.g. study.name=digits-lstm-2"
        self.require(bool(self.name.strip()), prefix, "name", "must not be empty", fix)
        self.require(
            not any(ch in self.name for ch in "/\\")
            and self.name not in (".", "..")
            and self.name.isprintable(),
            prefix,
            "name",
            "must be usable as a folder name (no '/', '\\' or control characters)",
            fix,
        )


# --------------------------------------------------------------------------- the whole config


@dataclass
class Config(Checked):
    """One sweep. The group nodes (task, model, optimizer, schedule) hold their option's schema;
    `grid` is a mapping while composing and a GridConfig after conversion."""

    task: Any = None
    # who trains each (setting, seed): builtin, command or a function (configs/trainer/)
    trainer: Any = None
    model: Any = None
    optimizer: Any = None
    schedule: Any = None
    grid: Any = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_GRID.items()})
    detect: DetectConfig = field(default_factory=DetectConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    find: FindConfig = field(default_factory=FindConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    start: StartConfig = field(default_factory=StartConfig)  # where every run starts (from scratch)
    checkpoint: KeepConfig = field(default_factory=KeepConfig)  # states kept for start.from_run
    seeds: int = 5  # repeated seeds per setting; seed values are 0..seeds-1
    epochs: int = 40  # epochs per run
    device: str = "auto"  # auto: CUDA when available, else CPU; or cpu, cuda, cuda:1, ...
    # Torch threads of each CPU worker (and OMP_NUM_THREADS of a command's runs). Fixed, not taken
    # from the machine's cores: results then do not depend on the machine or on `workers`.
    threads: int = 1
    # worker processes on this machine; auto: one per GPU, else one per CPU core
    workers: Any = "auto"
    packing: str = "auto"  # train the seeds of a setting as one packed model: auto | on | off
    checkpoint_every: int = 10  # checkpoint a running trial every N epochs (0: never) ...
    # ... or every N minutes of training, whichever comes first (0: never)
    checkpoint_minutes: float = 5.0
    results_dir: str = "results"  # outputs go to <results_dir>/<study.name>/

    def check(self, prefix: str = "") -> None:
        self.grid.check()
        if self.grid.lr_auto and not self.trainer.builtin:
            raise UserError(
                "grid.lr=auto: the range test trains lrsweep's own model, not your training; give "
                "grid.lr a list, e.g. grid.lr='[1e-4,1e-3,1e-2,1e-1]'"
            )
        self.require(self.seeds >= 1, prefix, "seeds", "must be >= 1", "e.g. seeds=5")
        self.require(self.seeds <= 10000, prefix, "seeds", "must be <= 10000")
        self.require(self.epochs >= 1, prefix, "epochs", "must be >= 1")
        if self.workers != "auto":
            self.require(
                self.workers >= 1,
                prefix,
                "workers",
                "must be >= 1 or auto",
                "e.g. workers=auto (the default)",
            )
        self.require(1 <= self.threads <= 1024, prefix, "threads", "must be >= 1")
        self.require(
            self.packing in ("auto", "on", "off"), prefix, "packing", "must be auto, on or off"
        )
        self.require(
            is_device_string(self.device),
            prefix,
            "device",
            "must be auto, cpu, cuda or cuda:N (N a GPU index without leading zeros)",
            "e.g. device=auto",
        )
        self.require(
            bool(self.results_dir.strip()),
            prefix,
            "results_dir",
            "must name a folder",
            "e.g. results_dir=results",
        )
        self.require(
            self.checkpoint_every >= 0, prefix, "checkpoint_every", "must be >= 0 (0: off)"
        )
        self.require(
            self.checkpoint_minutes >= 0 and math.isfinite(self.checkpoint_minutes),
            prefix,
            "checkpoint_minutes",
            "must be >= 0 (0: off)",
        )
        for name in (
            "trainer",
            "model",
            "optimizer",
            "detect",
            "study",
            "task",
            "schedule",
            "find",
            "refine",
            "signals",
            "start",
            "checkpoint",
        ):
            getattr(self, name).check(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable form (stored in the study; read back with `config_from_dict`)."""
        import dataclasses

        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d = {
            k: (
                v.to_node()
                if hasattr(v, "to_node")
                else dataclasses.asdict(v)
                if dataclasses.is_dataclass(v)
                else v
            )
            for k, v in d.items()
        }
        d["grid"] = self.grid.to_dict()
        return d

    @property
    def study_dir(self) -> Path:
        return Path(self.results_dir) / self.study.name

    def storage_url(self) -> str:
        """The Optuna storage URL; the default is an SQLite file under `results_dir`."""
        if self.study.storage:
            return self.study.storage
        return "sqlite:///" + str((Path(self.results_dir) / "lrsweep.db").resolve())


# The schema of each config group's options, by option name.
GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "task": TASKS,
    "trainer": TRAINERS,
    "model": {name: ModelConfig for name in MODEL_NAMES},
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
}


@functools.cache
def register() -> None:
    """Store every schema in Hydra's ConfigStore: `base_config`, and `base_<option>` per group
    option (configs/<group>/<option>.yaml lists it in its defaults). Once a process: the schemas
    never change, and storing them again cost a sixth of each composition."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, schemas in GROUP_SCHEMAS.items():
        for option, schema in schemas.items():
            cs.store(group=group, name=f"base_{option}", node=schema)
    from sweep.config.trainers import function_trainer_node  # a mapping: it takes any kwargs

    cs.store(group="trainer", name="base_function", node=function_trainer_node())
    cs.store(group="detect", name="base_detect", node=DetectConfig)
