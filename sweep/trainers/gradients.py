"""Gradient norms for a user's own PyTorch loop, in lrsweep's columns, so that the report of a
function trainer shows the same gradient figures as the built-in loop's.

Usage, in a training function (`trainer._target_`)::

    from sweep import GradientMonitor

    monitor = GradientMonitor(model)                 # groups: the model's top-level child modules
    for x, y in batches:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        monitor.clip(setting["clip"])                # records the norm before clipping, then clips
        optimizer.step()
    report(epoch, val_acc=acc, val_loss=vloss, train_loss=tl, **monitor.epoch_metrics())

`clip(max_norm)` is `torch.nn.utils.clip_grad_norm_` (same formula; None: no clipping) that also
keeps the global and per-group norms on the device; `epoch_metrics()` reads them once per epoch
(no host sync per step) and returns grad_norm_mean, grad_norm_max, grad_norm_p90, clip_fraction
(the share of steps clipped) and grad_norm_mean/<group>, grad_norm_max/<group>, then starts the
next epoch afresh.
"""

from __future__ import annotations

import torch
from torch import nn

from sweep.training.gradients import ParamGroups, group_row


class GradientMonitor:
    """Per-step gradient norms before clipping, summarised per epoch."""

    def __init__(self, model: nn.Module) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("GradientMonitor: the model has no trainable parameters")
        self.groups = ParamGroups.of(model, params, builtin=False)
        self._norms: list[torch.Tensor] = []
        self._group_norms: list[torch.Tensor] = []
        self._clip: float | None = None

    def clip(self, max_norm: float | None) -> torch.Tensor:
        """After `loss.backward()`: note the norms, clip the gradients to `max_norm` (None: leave
        them); returns the global norm before clipping (a device tensor)."""
        total, per_group = self.groups.clip(None if max_norm is None else float(max_norm))
        self._norms.append(total.detach())
        self._group_norms.append(per_group.detach())
        self._clip = None if max_norm is None else float(max_norm)
        return total

    def epoch_metrics(self) -> dict[str, float]:
        """This epoch's gradient columns (empty when no step was recorded); then reset."""
        if not self._norms:
            return {}
        norms = torch.stack(self._norms).float()
        per_group = torch.stack(self._group_norms).float()
        clipped = (
            (norms >= self._clip).float().mean() if self._clip is not None else torch.zeros(())
        )
        row = {
            "grad_norm_mean": norms.mean(),
            "grad_norm_max": norms.max(),
            "grad_norm_p90": torch.quantile(norms, 0.9),
            "clip_fraction": clipped,
            **group_row(self.groups.names, per_group),
        }
        values = torch.stack([v.reshape(()).to(norms.device) for v in row.values()]).cpu().tolist()
        self._norms, self._group_norms = [], []
        return dict(zip(row, values))
