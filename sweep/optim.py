"""Optimizers (config group `optimizer/`) and learning-rate schedules (config group `schedule/`).

Usage::

    opt = build_optimizer(params, cfg.optimizer, lr=setting["lr"], device=device)
    for step in range(total_steps):
        set_lr(opt, lr_at(cfg.schedule, step, total_steps, setting["lr"]))

The schedule is a pure function of the step, so a resumed run continues exactly where it was.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch


def build_optimizer(params: Iterable[torch.Tensor], cfg: Any, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """The configured optimizer over `params`, using the multi-tensor (foreach) kernels."""
    params = list(params)
    common = {"lr": lr, "weight_decay": cfg.weight_decay, "foreach": True}
    if cfg.name == "sgd":
        return torch.optim.SGD(params, momentum=cfg.momentum, nesterov=cfg.nesterov, **common)
    if cfg.name == "adam":
        return torch.optim.Adam(params, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, **common)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, **common)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, **common)
    raise ValueError(f"unknown optimizer {cfg.name!r}")  # config validation makes this unreachable


def lr_at(cfg: Any, step: int, total_steps: int, base_lr: float) -> float:
    """Learning rate at optimizer step `step` (0-based) of `total_steps`."""
    if cfg.name == "constant":
        return base_lr
    raise ValueError(f"unknown schedule {cfg.name!r}")


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def cosine(fraction: float) -> float:
    """1 -> 0 along half a cosine as `fraction` goes 0 -> 1."""
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, fraction))))
