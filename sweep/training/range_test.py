"""A learning-rate range test (as fastai's `lr_find` made familiar): one run whose learning rate
grows exponentially step by step, stopped when its smoothed loss diverges.

Usage::

    result = lr_range_test(task, spec, seed=0, device=torch.device("cpu"))
    result.diverged_lr, result.steepest_lr        # where the loss blew up / fell fastest

The loss is smoothed with an exponential moving average (bias-corrected, as fastai's); the run
stops at the first non-finite loss or when the smoothed loss exceeds `diverge` x its lowest value.
`steepest_lr` is where the smoothed loss falls fastest per decade of learning rate. Known
weakness: both numbers move from run to run and with early spikes, so lrsweep uses them only to
bracket a grid, never as the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sweep.tasks.scoring import batch_loss, step_mask
from sweep.training.gradients import ParamGroups
from sweep.training.models import accepts_targets, build_model
from sweep.training.optim import build_optimizer, set_lr


@dataclass
class RangeTest:
    """One range-test run: the learning rate and loss at every step it took."""

    seed: int
    clip: float | None
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    diverged_lr: float | None = None  # None: no divergence up to the last lr tried
    steepest_lr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "clip": self.clip,
            "lrs": self.lrs,
            "losses": self.losses,
            "smoothed": self.smoothed,
            "diverged_lr": self.diverged_lr,
            "steepest_lr": self.steepest_lr,
        }


def ramp(lr_min: float, lr_max: float, steps: int) -> np.ndarray:
    """The learning rate of each step: exponential from lr_min to lr_max."""
    return lr_min * (lr_max / lr_min) ** (np.arange(steps) / max(steps - 1, 1))


def steepest(lrs: list[float], smoothed: list[float], skip: int = 10) -> float | None:
    """The lr where the smoothed loss falls fastest per decade (the first `skip` steps, where
    the average is still settling, and the steps after the lowest loss are not considered)."""
    if len(smoothed) < skip + 3:
        return None
    lowest = int(np.nanargmin(smoothed))
    x, y = np.log10(lrs[: lowest + 1]), np.asarray(smoothed[: lowest + 1])
    if len(x) < skip + 3:
        return None
    slope = np.gradient(y, x)[skip:]
    return float(lrs[skip + int(np.nanargmin(slope))])


def lr_range_test(
    task: Any,
    spec: Any,
    seed: int,
    device: torch.device,
    clip: float | None = None,
    lr_min: float = 1e-5,
    lr_max: float = 10.0,
    steps: int = 300,
    beta: float = 0.98,
    diverge: float = 4.0,
) -> RangeTest:
    """Train one fresh model of `spec` (model, optimizer, batch size) with the lr ramp."""
    result = RangeTest(seed=seed, clip=clip)
    model = build_model(spec.model, task, seed).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = ParamGroups.of(model, params)
    teacher = accepts_targets(model)
    optimizer = build_optimizer(params, spec.optimizer, lr_min, device, groups)
    generator = torch.Generator().manual_seed(seed)
    batch = min(spec.batch_size, task.n_train)
    order = torch.randperm(task.n_train, generator=generator)
    position, average, lowest = 0, 0.0, math.inf
    model.train()
    for step, lr in enumerate(ramp(lr_min, lr_max, steps)):
        if position + batch > task.n_train:  # a new epoch: a new order
            order, position = torch.randperm(task.n_train, generator=generator), 0
        idx = order[position : position + batch].to(device)
        position += batch
        xb, yb = task.x_train.index_select(0, idx), task.y_train.index_select(0, idx)
        lb = task.lengths_train.index_select(0, idx) if task.lengths_train is not None else None
        set_lr(optimizer, float(lr))
        out = model(xb, lb, targets=yb) if teacher else model(xb, lb)
        mask = step_mask(lb, xb.shape[0], xb.shape[1], device) if task.per_step else None
        loss = batch_loss(task.kind, out, yb, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        groups.clip(clip)
        optimizer.step()
        value = loss.item()  # one read per step: a range test is a few hundred steps
        result.lrs.append(float(lr))
        result.losses.append(value)
        if not math.isfinite(value):
            result.smoothed.append(math.nan)
            result.diverged_lr = float(lr)
            break
        average = beta * average + (1 - beta) * value
        smoothed = average / (1 - beta ** (step + 1))
        result.smoothed.append(smoothed)
        lowest = min(lowest, smoothed)
        if step >= 10 and smoothed > diverge * lowest:
            result.diverged_lr = float(lr)
            break
    result.steepest_lr = steepest(result.lrs, result.smoothed)
    return result


def propose_grid(
    diverged: list[float], steepest_lrs: list[float | None], decades: float = 2.0
) -> list[float]:
    """A grid of learning rates in 1-3-10 steps from about `decades` decades below the divergence
    point (lower still if a run's steepest descent lies lower) up to it.

    `diverged`: the divergence lr per clip value (the median of its seeds); the grid ends at the
    first 1-3-10 value at or above the largest, so it reaches the edge for every clip value.
    """
    top = max(diverged)
    bottom = min([min(diverged) / 10**decades] + [s for s in steepest_lrs if s])
    exponents = range(math.floor(math.log10(bottom)) - 1, math.ceil(math.log10(top)) + 2)
    ladder = sorted({float(f"{m * 10.0**e:.3g}") for e in exponents for m in (1.0, 3.0)})
    start = max(v for v in ladder if v <= bottom * 1.0001)
    stop = min(v for v in ladder if v >= top * 0.9999)
    return [v for v in ladder if start <= v <= stop]
