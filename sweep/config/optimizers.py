"""The optimizer and learning-rate schedule schemas (configs/optimizer/, configs/schedule/): one
dataclass per option with its defaults and rules, part of `sweep.config.schema`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sweep.config.rules import Checked


@dataclass
class OptimizerConfig(Checked):
    """What every optimizer has: decay added to the gradient, and an L2 penalty added to the loss."""

    name: str = "?"
    # L2 added to the gradient by the optimizer (AdamW: decoupled) (0: off)
    weight_decay: float = 0.0
    l2: float = 0.0  # L2 penalty l2 * sum(w^2) over weight matrices added to the loss (0: off)
    # Discriminative learning rates: one multiplier of the swept lr per parameter group, in the
    # model's group order (lrsweep's LSTM/GRU: [embed,] rnn.l0, rnn.l1, ..., head; a user's
    # model: its top-level child modules). Empty: every group trains at the swept lr.
    group_lr_mult: list[float] = field(
        default_factory=list, metadata={"example": "[0.11,0.33,1.0] (lr/9, lr/3, lr)"}
    )

    def check(self, prefix: str) -> None:
        self.require(self.weight_decay >= 0, prefix, "weight_decay", "must be >= 0")
        self.require(self.l2 >= 0, prefix, "l2", "must be >= 0")
        self.require(
            all(math.isfinite(m) and m > 0 for m in self.group_lr_mult),
            prefix,
            "group_lr_mult",
            "must list positive finite multipliers, one per parameter group",
        )


@dataclass
class SGDConfig(OptimizerConfig):
    """torch.optim.SGD."""

    name: str = "sgd"
    momentum: float = 0.9  # heavy-ball momentum (0: plain SGD)
    nesterov: bool = False  # Nesterov momentum (needs momentum > 0)

    def check(self, prefix: str) -> None:
        super().check(prefix)
        self.require(0 <= self.momentum < 1, prefix, "momentum", "must be in [0, 1)")
        if self.nesterov:
            self.require(self.momentum > 0, prefix, "nesterov", "needs optimizer.momentum > 0")


@dataclass
class AdamConfig(OptimizerConfig):
    """torch.optim.Adam."""

    name: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def check(self, prefix: str) -> None:
        super().check(prefix)
        for name in ("beta1", "beta2"):
            self.require(0 <= getattr(self, name) < 1, prefix, name, "must be in [0, 1)")
        self.require(self.eps > 0, prefix, "eps", "must be > 0")


@dataclass
class AdamWConfig(AdamConfig):
    """torch.optim.AdamW: Adam with decoupled weight decay."""

    name: str = "adamw"
    weight_decay: float = 0.01


@dataclass
class RMSpropConfig(OptimizerConfig):
    """torch.optim.RMSprop."""

    name: str = "rmsprop"
    alpha: float = 0.99  # smoothing constant of the squared-gradient average
    eps: float = 1e-8
    momentum: float = 0.0  # momentum (0: off)

    def check(self, prefix: str) -> None:
        super().check(prefix)
        self.require(0 <= self.alpha < 1, prefix, "alpha", "must be in [0, 1)")
        self.require(self.eps > 0, prefix, "eps", "must be > 0")
        self.require(0 <= self.momentum < 1, prefix, "momentum", "must be in [0, 1)")


OPTIMIZERS: dict[str, type] = {
    "sgd": SGDConfig,
    "adam": AdamConfig,
    "adamw": AdamWConfig,
    "rmsprop": RMSpropConfig,
}


@dataclass
class ScheduleConfig(Checked):
    """The learning rate over optimizer steps (a pure function of the step: `sweep.training.optim`)."""

    name: str = "?"

    def check(self, prefix: str) -> None:
        pass


@dataclass
class ConstantSchedule(ScheduleConfig):
    """The learning rate stays at the setting's lr for the whole run."""

    name: str = "constant"


@dataclass
class WarmupSchedule(ScheduleConfig):
    """Linear warmup from lr / warmup_steps to lr over `warmup_steps` steps, then constant."""

    name: str = "warmup"
    # optimizer steps (not epochs) of linear warmup (0: off, same as constant)
    warmup_steps: int = 100

    def check(self, prefix: str) -> None:
        self.require(self.warmup_steps >= 0, prefix, "warmup_steps", "must be >= 0 (0: no warmup)")


@dataclass
class CosineSchedule(WarmupSchedule):
    """Optional linear warmup, then cosine decay from lr to `min_lr_ratio * lr` at the last step."""

    name: str = "cosine"
    warmup_steps: int = 0
    # final learning rate as a fraction of lr (0: decay to zero; 1: constant)
    min_lr_ratio: float = 0.0

    def check(self, prefix: str) -> None:
        super().check(prefix)
        self.require(0 <= self.min_lr_ratio <= 1, prefix, "min_lr_ratio", "must be in [0, 1]")


@dataclass
class OneCycleSchedule(ScheduleConfig):
    """torch.optim.lr_scheduler.OneCycleLR (cosine annealing, two phases), without momentum cycling."""

    name: str = "onecycle"
    pct_start: float = 0.3  # share of all optimizer steps spent rising to the peak
    div_factor: float = 25.0  # initial lr = lr / div_factor
    final_div_factor: float = 1e4  # final lr = initial lr / final_div_factor (torch's definition)

    def check(self, prefix: str) -> None:
        self.require(0 < self.pct_start < 1, prefix, "pct_start", "must be in (0, 1)")
        for name in ("div_factor", "final_div_factor"):
            self.require(getattr(self, name) >= 1, prefix, name, "must be >= 1")


@dataclass
class StepSchedule(ScheduleConfig):
    """`before_lr` for the first `at_step` optimizer steps, then the setting's lr: a late change of
    learning rate ("which lr is safe from epoch k on?": at_step = k x steps per epoch)."""

    name: str = "step"
    at_step: int = 0  # optimizer steps at before_lr (0: the setting's lr throughout)
    before_lr: float = 0.01  # the learning rate before at_step (the same for every setting)

    def check(self, prefix: str) -> None:
        self.require(self.at_step >= 0, prefix, "at_step", "must be >= 0 (0: off)")
        self.require(self.before_lr > 0, prefix, "before_lr", "must be > 0")


SCHEDULES: dict[str, type] = {
    "constant": ConstantSchedule,
    "step": StepSchedule,
    "warmup": WarmupSchedule,
    "cosine": CosineSchedule,
    "onecycle": OneCycleSchedule,
}
