"""Schemas of the `trainer` config group: who trains a (setting, seed).

- `builtin` (the default): lrsweep's own loop over its task data and model (`task`, `model`,
  `optimizer`, `schedule` apply).
- `command`: a user's training script in any framework, run once per (setting, seed) from the
  template `trainer.command`; it writes a per-epoch metrics file that lrsweep reads.
- a function, `trainer._target_: mytrain.fit`: a user's Python training function called in the
  worker process, reporting each epoch through a callback (`TargetTrainer`).

The command and the function trainers share `ExternalTrainer`: which curve the collapse calls
read (`metric`: the accuracy, or the loss when the training logs no meaningful accuracy), what
the noise-aware accuracy calls need to know about the user's validation set (`n_val`, `chance`),
the loss of knowing nothing (`chance_loss`), how long a run may take, and how the user's metric
names map onto lrsweep's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sweep.config.rules import Checked, rule_error

FROM_LOG = "log"  # trainer.n_val=log / trainer.chance=log: read from the metrics the run writes
# Which curve the collapse calls read: `auto` (the accuracy when the log has one and n_val and
# chance are known and it measures the training, else the loss), `acc` or `loss`.
METRICS = ("auto", "acc", "loss")


@dataclass
class TrainerConfig(Checked):
    name: str = "?"

    @property
    def builtin(self) -> bool:
        return self.name == "builtin"

    def check(self, prefix: str) -> None:
        pass


@dataclass
class BuiltinTrainer(TrainerConfig):
    """lrsweep's own training loop (task data on the device, packed or separate seeds)."""

    name: str = "builtin"


def _check_external(trainer: Any, prefix: str) -> None:
    """The rules of ExternalTrainer's fields (also for a function trainer's node)."""
    n_val, chance = trainer.n_val, trainer.chance
    if trainer.metric not in METRICS:
        raise rule_error(
            f"{prefix}.metric",
            f"must be one of {', '.join(METRICS)}",
            trainer.metric,
            f"e.g. {prefix}.metric=loss (calls from the loss: a training without an accuracy)",
        )
    if trainer.metric == "acc" and n_val is None:
        raise rule_error(
            f"{prefix}.n_val",
            "the accuracy calls (metric=acc) test against sampling noise, so they need the "
            "number of validation items your training evaluates on",
            None,
            f"set {prefix}.n_val=N, or {prefix}.n_val=log when the metrics hold an n_val column",
        )
    if (
        n_val is not None
        and n_val != FROM_LOG
        and not (isinstance(n_val, int) and not isinstance(n_val, bool) and n_val >= 1)
    ):
        raise rule_error(
            f"{prefix}.n_val",
            "must be a whole number >= 1 or log",
            n_val,
            f"e.g. {prefix}.n_val=500",
        )
    if trainer.metric == "acc" and chance is None:
        raise rule_error(
            f"{prefix}.chance",
            "the accuracy calls (metric=acc) need the accuracy of guessing (the majority "
            "class's share of the validation set)",
            None,
            f"set {prefix}.chance=P (e.g. 0.1 for 10 balanced classes), or {prefix}.chance=log",
        )
    if (
        chance is not None
        and chance != FROM_LOG
        and not (
            isinstance(chance, (int, float)) and not isinstance(chance, bool) and 0 <= chance < 1
        )
    ):
        raise rule_error(
            f"{prefix}.chance",
            "must be a number in [0, 1) or log",
            chance,
            f"e.g. {prefix}.chance=0.1",
        )
    chance_loss = trainer.chance_loss
    if (
        chance_loss is not None
        and chance_loss != FROM_LOG
        and not (
            isinstance(chance_loss, (int, float))
            and not isinstance(chance_loss, bool)
            and math.isfinite(chance_loss)
            and chance_loss > 0
        )
    ):
        raise rule_error(
            f"{prefix}.chance_loss",
            "must be a number > 0 (the loss of knowing nothing) or log",
            chance_loss,
            f"e.g. {prefix}.chance_loss=2.303 (cross-entropy of 10 balanced classes: ln 10)",
        )
    if not (math.isfinite(trainer.timeout_minutes) and trainer.timeout_minutes >= 0):
        raise rule_error(
            f"{prefix}.timeout_minutes",
            "must be >= 0 (0: no limit)",
            trainer.timeout_minutes,
            f"e.g. {prefix}.timeout_minutes=60",
        )
    bad = [k for k, v in trainer.columns.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise rule_error(
            f"{prefix}.columns.{bad[0]}",
            "must name a column of the metrics",
            trainer.columns[bad[0]],
            f"e.g. {prefix}.columns.val_acc=val_accuracy",
        )


@dataclass
class ExternalTrainer(TrainerConfig):
    """What the command and function trainers share."""

    # Which curve the collapse calls read: auto, acc (the accuracy; needs n_val and chance) or
    # loss (the validation loss when logged, else the training loss).
    metric: str = "auto"
    # Validation items each accuracy is measured on, and the accuracy of guessing: the accuracy
    # calls test against the sampling noise these imply. A number, or `log` (a column of the
    # metrics). Not needed for calls from the loss.
    n_val: Any = None
    chance: Any = None
    # The loss of knowing nothing (cross-entropy: the entropy of the label frequencies; MSE: the
    # variance of the targets), the reference of the loss calls; a number, `log`, or null: the
    # run's first logged loss.
    chance_loss: Any = None
    # a run still going after this long is stopped and recorded as timed out (0: no limit)
    timeout_minutes: float = 0.0
    # lrsweep's curve name -> the metric name your training logs, where the defaults do not find it
    # (e.g. {val_acc: my_accuracy}); the defaults read Keras's and Lightning's usual names.
    columns: dict[str, str] = field(
        default_factory=dict, metadata={"example": "{val_acc:my_accuracy}"}
    )

    def check(self, prefix: str) -> None:
        _check_external(self, prefix)


@dataclass
class CommandTrainer(ExternalTrainer):
    """A training script, run once per (setting, seed) in its own process group."""

    name: str = "command"
    # The command line, a template: {lr} {clip} (the word none: no clipping) {batch_size} {seed}
    # {epochs}, every extra grid axis by its key, {metrics} (the per-epoch log the run writes),
    # {run_dir} (a private folder for the run) and {checkpoint_dir} (kept until the run is done).
    command: str = ""
    metrics_file: str = "metrics.csv"  # the path {metrics} stands for, relative to {run_dir}
    stop_grace_seconds: float = 10.0  # a stopped run gets SIGTERM, then SIGKILL this much later

    def check(self, prefix: str) -> None:
        self.require(
            bool(self.command.strip()),
            prefix,
            "command",
            "must be the command line of your training",
            f"e.g. {prefix}.command='python train.py --lr {{lr}} --seed {{seed}} --log {{metrics}}'",
        )
        super().check(prefix)
        self.require(
            bool(self.metrics_file.strip()) and not self.metrics_file.startswith("/"),
            prefix,
            "metrics_file",
            "must be a path relative to the run's folder",
            "e.g. metrics.csv",
        )
        self.require(self.stop_grace_seconds >= 0, prefix, "stop_grace_seconds", "must be >= 0")


TRAINERS: dict[str, type] = {"builtin": BuiltinTrainer, "command": CommandTrainer}
# The keys of a function trainer's node that are lrsweep's, not the function's keyword arguments.
TARGET_OPTIONS = ("metric", "n_val", "chance", "chance_loss", "timeout_minutes", "columns")


@dataclass
class TargetTrainer(ExternalTrainer):
    """A user's training function `target` (dotted path), called per (setting, seed) with
    `kwargs` besides lrsweep's arguments (see sweep.trainers.function)."""

    name: str = "function"
    target: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    # a hash of the function's source code: changing the code changes results
    source: str | None = None

    @classmethod
    def from_node(cls, node: dict[str, Any], convert: Any) -> TargetTrainer:
        from sweep.config.targets import TARGET, check_target

        target = check_target(node, f"trainer.{TARGET}")
        options = {k: node[k] for k in TARGET_OPTIONS if k in node}
        typed = convert(ExternalTrainer, options)
        kwargs = {
            k: v for k, v in node.items() if k not in (TARGET, "name", "source", *TARGET_OPTIONS)
        }
        return cls(
            target=target,
            kwargs=kwargs,
            source=node.get("source"),
            **{k: getattr(typed, k) for k in TARGET_OPTIONS},
        )

    def to_node(self) -> dict[str, Any]:
        from sweep.config.targets import TARGET

        node = {
            TARGET: self.target,
            "name": self.name,
            **{k: getattr(self, k) for k in TARGET_OPTIONS},
            **self.kwargs,
        }
        if self.source is not None:
            node["source"] = self.source
        return node


def function_trainer_node() -> dict[str, Any]:
    """The `trainer=function` option as a plain mapping (`base_function` in Hydra's ConfigStore):
    the function to call (required) and lrsweep's own keys with the schema's defaults
    (`TargetTrainer`), so that configs/trainer/function.yaml states no default of its own. A
    mapping rather than the dataclass: every other key (`+trainer.hidden=32`) is the function's
    keyword argument."""
    import dataclasses

    from sweep.config.targets import TARGET

    defaults = {}
    for f in dataclasses.fields(TargetTrainer):
        if f.name in TARGET_OPTIONS:
            no_default = f.default is dataclasses.MISSING
            defaults[f.name] = f.default_factory() if no_default else f.default  # type: ignore[misc]
    return {TARGET: "???", "name": "function", **defaults}
