"""Which columns of a user's metrics file feed lrsweep's curve names (see sweep.trainers.logs).

`DEFAULT_COLUMNS` lists, per contract name, the file columns it is read from; `ColumnPlan` picks
them for one file, with the user's `trainer.columns` mapping first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sweep.core.errors import UserError

#: The curve names lrsweep knows (plus the per-group gradient columns of GROUP_PREFIXES).
CONTRACT_COLUMNS: tuple[str, ...] = (
    "train_loss",
    "val_loss",
    "val_acc",
    "grad_norm_mean",
    "grad_norm_max",
    "grad_norm_p90",
    "clip_fraction",
    "pred_top_frac",
    "epoch_lr",
    "val_loss_sd",
    "train_loss_sd",
    # the signals of why a run collapsed (docs/why-it-collapsed.md), from lrsweep's callbacks
    "update_ratio",
    "sat_frac",
    "crit_lr",
    "logit_lse",
)
#: Per-group columns (`grad_norm_mean/<group>`, ...) pass through by their own name.
GROUP_PREFIXES: tuple[str, ...] = (
    "grad_norm_mean/",
    "grad_norm_max/",
    "update_ratio/",
    "sat_frac/",
    "nonfinite_origin/",  # 1 in the epoch where that group's NaN/inf appeared first (callbacks)
)
ORIGIN_PREFIX = "nonfinite_origin/"

#: Contract name -> the file columns it is read from, in order of preference.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "val_acc": (
        "val_acc",
        "val_accuracy",
        "val/acc",
        "val/accuracy",
        "valid_acc",
        "valid_accuracy",
        "val_acc_epoch",
        "val_accuracy_epoch",
        "validation_accuracy",
    ),
    "val_loss": ("val_loss", "val/loss", "valid_loss", "val_loss_epoch", "validation_loss"),
    # Lightning's on_step+on_epoch `train_loss` is `train_loss_epoch` (+ `train_loss_step`, used for its sd)
    "train_loss": (
        "train_loss",
        "loss",
        "train/loss",
        "train_loss_epoch",
        "training_loss",
        "train_loss_step",
    ),
    # Keras writes `learning_rate` when a schedule callback sets it; Lightning's LearningRateMonitor `lr-<Opt>`
    "epoch_lr": (
        "epoch_lr",
        "lr",
        "learning_rate",
        "lr-SGD",
        "lr-Adam",
        "lr-AdamW",
        "lr-RMSprop",
        "lr-Adagrad",
        "lr-Adadelta",
        "lr-Adamax",
        "lr-NAdam",
        "lr-RAdam",
    ),
    "grad_norm_mean": ("grad_norm_mean",),
    "grad_norm_max": ("grad_norm_max",),
    "grad_norm_p90": ("grad_norm_p90",),
    "clip_fraction": ("clip_fraction",),
    "pred_top_frac": ("pred_top_frac",),
    "val_loss_sd": ("val_loss_sd",),
    "train_loss_sd": ("train_loss_sd",),
    "update_ratio": ("update_ratio",),
    "sat_frac": ("sat_frac",),
    "crit_lr": ("crit_lr",),
    "logit_lse": ("logit_lse",),
}
#: Not curves, but read from the log too (and mappable with `columns`).
EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {
    "epoch": ("epoch",),
    "n_val": ("n_val",),
    "chance": ("chance",),
    "chance_loss": ("chance_loss",),
    # the layer where a NaN/inf first appeared (a word, on the row of the epoch it happened in)
    "nonfinite_origin": ("nonfinite_origin",),
}
#: Extra columns holding one value for the whole run (checked to be the same on every row).
RUN_CONSTANTS = ("n_val", "chance", "chance_loss")
#: Extra columns holding words, not numbers.
TEXT_COLUMNS = ("nonfinite_origin",)
LOSSES = ("train_loss", "val_loss")
ABSENT = frozenset(
    {"", "NA"}
)  # an empty cell; Keras's CSVLogger writes NA for a key an epoch lacked
HOW_TO_MAP = "name yours with trainer.columns.{name}=COLUMN"
_WHAT = {
    "val_acc": "validation accuracy",
    "val_loss": "validation loss",
    "train_loss": "training loss",
    "epoch_lr": "learning rate",
    "epoch": "epoch",
}

Columns = Mapping[str, str | Sequence[str]] | None


def _looks_like_a_loss(column: str) -> bool:
    name = column.lower()
    return any(word in name for word in ("loss", "mse", "mae", "rmse", "error", "perplexity"))


class LogError(UserError):
    """A metrics file that breaks a rule of the log; the message names the file, line and fix."""


@dataclass
class EpochLog:
    """A parsed log: `epochs[i]` holds epoch i+1's values by contract name (only those logged)."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    n_val: int | None = None
    chance: float | None = None
    chance_loss: float | None = None
    nonfinite_origin: str | None = None  # the first one the log names
    columns: dict[str, str] = field(default_factory=dict)  # contract name -> file column read
    format: str = "csv"  # "keras-csv" | "lightning-csv" | "csv" | "jsonl"
    path: str = ""


# ------------------------------------------------------------------------------------ which columns


class ColumnPlan:
    """Which file column feeds each contract name, given the columns the file has."""

    def __init__(
        self, path: str, present: Mapping[str, int], columns: Columns, metric: str = "auto"
    ) -> None:
        self.path = path
        self.metric = metric  # "acc": the accuracy is needed; "loss": a loss; "auto": either
        self.empty_header = not present
        user = {}
        for name, value in (columns or {}).items():
            if (
                name not in DEFAULT_COLUMNS
                and name not in EXTRA_COLUMNS
                and not name.startswith(GROUP_PREFIXES)
            ):
                known = ", ".join(CONTRACT_COLUMNS + tuple(EXTRA_COLUMNS))
                raise LogError(
                    f"trainer.columns.{name}: lrsweep has no column {name!r} to read from metrics file "
                    f"{path}; use one of {known} (or grad_norm_mean/<group>, grad_norm_max/<group>)"
                )
            user[name] = (value,) if isinstance(value, str) else tuple(value)
            if name == "val_acc" and any(_looks_like_a_loss(v) for v in user[name]):
                raise LogError(
                    f"trainer.columns.val_acc={user[name][0]}: that column holds a loss, not an "
                    f"accuracy; map it with trainer.columns.val_loss=COLUMN (or "
                    f"train_loss), and the calls read the loss"
                )
        self.user = user
        self.missing_user: list[tuple[str, tuple[str, ...]]] = []
        self.source: dict[str, str] = {}  # contract (or extra) name -> file column
        for name, aliases in list(DEFAULT_COLUMNS.items()) + list(EXTRA_COLUMNS.items()):
            candidates = user.get(name, aliases)
            found = next((c for c in candidates if c in present), None)
            if found is not None:
                self.source[name] = found
            elif name in user:
                self.missing_user.append((name, candidates))
        for name, candidates in user.items():  # per-group gradient columns named by the user
            if name.startswith(GROUP_PREFIXES) and name not in self.source:
                found = next((c for c in candidates if c in present), None)
                if found is not None:
                    self.source[name] = found
                else:
                    self.missing_user.append((name, candidates))
        taken = set(self.source.values())
        for column in present:
            if (
                column.startswith(GROUP_PREFIXES)
                and column not in self.source
                and column not in taken
            ):
                self.source[column] = column
        self.epoch = self.source.pop("epoch", None)
        # the step values of Lightning's on_step+on_epoch train loss give its sd
        self.train_steps: str | None = None
        train = self.source.get("train_loss")
        if train is not None and train.endswith("_epoch"):
            sibling = train[: -len("_epoch")] + "_step"
            if sibling in present:
                self.train_steps = sibling
        read = set(self.source.values())
        if self.train_steps:
            read.add(self.train_steps)
        self.read = sorted(read)

    def check_user_columns(self) -> None:
        if self.missing_user:
            name, candidates = self.missing_user[0]
            raise LogError(
                f"metrics file {self.path} has no column {' or '.join(map(repr, candidates))} "
                f"(trainer.columns.{name}); name a column the script writes, or drop the mapping"
            )

    @property
    def loss(self) -> str | None:
        """The loss curve the loss calls read: the validation loss when logged, else training's."""
        return next((n for n in ("val_loss", "train_loss") if n in self.source), None)

    @property
    def primary(self) -> str | None:
        """The curve every epoch must hold: the accuracy where it may be used, else the loss."""
        if self.metric != "loss" and "val_acc" in self.source:
            return "val_acc"
        return self.loss

    def check_metric(self) -> None:
        """The log holds what the calls read: an accuracy (metric=acc), or a loss, or either."""
        if self.metric == "acc" and "val_acc" not in self.source:
            looked = ", ".join(DEFAULT_COLUMNS["val_acc"])
            raise LogError(
                f"metrics file {self.path} has no validation accuracy column (looked for {looked}), "
                f"and metric=acc reads one; {HOW_TO_MAP.format(name='val_acc')}, or use "
                f"trainer.metric=auto for calls from the loss"
            )
        if self.primary is None:
            looked = ", ".join(DEFAULT_COLUMNS["val_loss"] + DEFAULT_COLUMNS["train_loss"])
            raise LogError(
                f"metrics file {self.path} has neither an accuracy nor a loss column (looked for "
                f"{looked} and the accuracy names); log the loss every epoch, or "
                f"{HOW_TO_MAP.format(name='train_loss')}"
            )
