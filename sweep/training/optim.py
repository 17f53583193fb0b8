"""Optimizers (config group `optimizer/`) and learning-rate schedules (config group `schedule/`).

Usage::

    opt = build_optimizer(params, cfg.optimizer, lr=setting["lr"], device=device, groups=groups)
    for step in range(total_steps):
        set_lr(opt, lr_at(cfg.schedule, step, total_steps, setting["lr"]))

The schedule is a pure function of the step, so a resumed run continues exactly where it was.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from sweep.training.gradients import ParamGroups, optimizer_groups


def build_optimizer(
    params: Iterable[torch.Tensor],
    cfg: Any,
    lr: float,
    device: torch.device,
    groups: ParamGroups | None = None,
) -> torch.optim.Optimizer:
    """The configured optimizer over `params`, using the multi-tensor (foreach) kernels.

    With `cfg.group_lr_mult` (discriminative learning rates) the parameters are split into the
    `groups` (the same parameters, grouped: embedding, each recurrent layer, head), group i at
    lr x group_lr_mult[i]."""
    params: Any = list(params)
    mults = list(getattr(cfg, "group_lr_mult", None) or [])
    if mults:
        if groups is None:
            raise ValueError("optimizer.group_lr_mult needs the model's parameter groups")
        params = optimizer_groups(groups, mults, lr)
    common = {"lr": lr, "weight_decay": cfg.weight_decay, "foreach": True}
    if cfg.name == "sgd":
        return torch.optim.SGD(params, momentum=cfg.momentum, nesterov=cfg.nesterov, **common)
    if cfg.name == "adam":
        return torch.optim.Adam(params, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, **common)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, **common)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            params, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, **common
        )
    raise ValueError(f"unknown optimizer {cfg.name!r}")  # config validation makes this unreachable


def lr_at(cfg: Any, step: int, total_steps: int, base_lr: float) -> float:
    """Learning rate at optimizer step `step` (0-based) of `total_steps`.

    A pure function of its arguments (no scheduler state), so a resumed run continues exactly.

    - constant: `base_lr` throughout.
    - step: `before_lr` for steps 0..at_step-1, then `base_lr` (a late raise or drop).
    - warmup: `base_lr * (step + 1) / warmup_steps` for the first `warmup_steps` steps (the first
      step already moves; the last warmup step reaches `base_lr`), then `base_lr`.
    - cosine: the same linear warmup (off by default), then half a cosine from `base_lr` at the
      first step after warmup to `min_lr_ratio * base_lr` at the last step.
    - onecycle: torch.optim.lr_scheduler.OneCycleLR with cosine annealing (two phases, step for
      step the same values): from `base_lr / div_factor` up to `base_lr` at step
      `pct_start * total_steps - 1`, then down to `base_lr / (div_factor * final_div_factor)` at
      the last step. Momentum is not cycled (OneCycleLR's `cycle_momentum=False`).
    """
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "step":
        return cfg.before_lr if step < cfg.at_step else base_lr
    if cfg.name == "warmup":
        return base_lr * _warmup_factor(step, cfg.warmup_steps)
    if cfg.name == "cosine":
        if step < cfg.warmup_steps:
            return base_lr * _warmup_factor(step, cfg.warmup_steps)
        decay_steps = total_steps - cfg.warmup_steps - 1
        fraction = (step - cfg.warmup_steps) / decay_steps if decay_steps > 0 else 1.0
        low = cfg.min_lr_ratio * base_lr
        return low + (base_lr - low) * cosine(fraction)
    if cfg.name == "onecycle":
        start = base_lr / cfg.div_factor
        end = start / cfg.final_div_factor
        peak_step = float(cfg.pct_start * total_steps) - 1  # OneCycleLR's end of phase 1
        if step <= peak_step:
            return _anneal(start, base_lr, step / peak_step if peak_step > 0 else 1.0)
        last = total_steps - 1
        return _anneal(
            base_lr, end, (step - peak_step) / (last - peak_step) if last > peak_step else 1.0
        )
    raise ValueError(f"unknown schedule {cfg.name!r}")  # config validation makes this unreachable


def _warmup_factor(step: int, warmup_steps: int) -> float:
    """(step + 1) / warmup_steps during warmup, 1 after it (and always 1 without warmup)."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def _anneal(start: float, end: float, fraction: float) -> float:
    """Cosine interpolation from `start` (fraction 0) to `end` (fraction 1), as OneCycleLR does."""
    return end + (start - end) * cosine(fraction)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every param group at `lr` times its multiplier (group_lr_mult; 1 without)."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def cosine(fraction: float) -> float:
    """1 -> 0 along half a cosine as `fraction` goes 0 -> 1."""
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, fraction))))
