"""The collapse signals of a user's own PyTorch loop, in lrsweep's columns, so that the report of a
function trainer shows the same figures and causes as the built-in loop's.

Usage, in a training function (`trainer._target_`)::

    from sweep import GradientMonitor

    monitor = GradientMonitor(model, optimizer)      # groups: the model's top-level child modules
    monitor.probe(x_val[:256], y_val[:256])          # once: the fixed probe batch (optional)
    for x, y in batches:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        monitor.clip(setting["clip"])                # records the norm before clipping, then clips
        optimizer.step()
    report(epoch, val_acc=acc, val_loss=vloss, train_loss=tl, **monitor.epoch_metrics())

What each part adds to `epoch_metrics()` (columns of sweep.core.signal_rules; all per epoch):

- `clip(max_norm)` (torch.nn.utils.clip_grad_norm_'s formula; None: no clipping), or
  `record_gradients(clip_at)` when something else clips: grad_norm_mean, grad_norm_max,
  grad_norm_p90, clip_fraction, grad_norm_mean/<group>, grad_norm_max/<group>.
- `optimizer` (its step hooks see every step): update_ratio, update_ratio/<group>, the mean over
  the epoch's steps of ||w_after - w_before|| / ||w_before||.
- `probe(inputs, targets=None, loss_fn=None)`: sat_frac and sat_frac/<layer> of the nn.LSTM /
  nn.GRU / nn.RNN(tanh) modules and cells found in the model; logit_lse (class-index targets);
  crit_lr (needs the optimizer and a loss: `loss_fn(outputs, targets)`, by default cross-entropy
  for class indices and mean squared error for float targets). `inputs` is what the model is
  called with (a tuple: several arguments); at most 256 sequences.
- always: nonfinite_origin/<module> = 1.0 in the epoch where a module's forward output or a
  parameter's gradient first went NaN/inf (forward and gradient hooks; `nonfinite_origin` holds
  the module's name).

Values stay on the device during the epoch; `epoch_metrics()` reads them in one transfer (plus
one loss per crit_lr ladder step) and starts the next epoch afresh. `close()` removes the hooks.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sweep.core.signal_rules import origin_column
from sweep.trainers.probe import LossFn, ProbeBatch
from sweep.trainers.step_watch import NonfiniteWatch, UpdateTracker
from sweep.training.gradients import ParamGroups, group_row


class GradientMonitor:
    """Per-step gradient norms, update ratios and non-finite checks, and a probe batch's
    saturation, logits and critical step, summarised per epoch."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("GradientMonitor: the model has no trainable parameters")
        self.model = model
        self.groups = ParamGroups.of(model, params, builtin=False)
        self._norms: list[torch.Tensor] = []
        self._group_norms: list[torch.Tensor] = []
        self._clip: float | None = None
        self.updates = UpdateTracker(self.groups, optimizer) if optimizer is not None else None
        self.watch = NonfiniteWatch(model)
        self._probe: ProbeBatch | None = None
        self.nonfinite_origin: str | None = None  # the module where a NaN/inf first appeared

    def probe(
        self, inputs: Any, targets: torch.Tensor | None = None, loss_fn: LossFn | None = None
    ):
        """Fix the probe batch (once): what the model is called with, its targets and loss."""
        self._probe = ProbeBatch(self.model, inputs, targets, loss_fn)

    def clip(self, max_norm: float | None) -> torch.Tensor:
        """After `loss.backward()`: note the norms, clip the gradients to `max_norm` (None: leave
        them); returns the global norm before clipping (a device tensor)."""
        return self._note(None if max_norm is None else float(max_norm), apply=True)

    def record_gradients(self, clip_at: float | None = None) -> torch.Tensor:
        """Note the norms without clipping (something else clips at `clip_at`, or nothing)."""
        return self._note(None if clip_at is None else float(clip_at), apply=False)

    @torch.no_grad()
    def _note(self, clip: float | None, apply: bool) -> torch.Tensor:
        # torch.nn.utils.clip_grad_norm_'s formula (as ParamGroups.clip), keeping the
        # per-parameter norms for the non-finite watch; a parameter without a gradient counts 0
        params = self.groups.params
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        per_param = torch.stack(torch._foreach_norm(grads))
        total = torch.linalg.vector_norm(per_param)
        if apply and clip is not None:
            present = [p.grad for p in params if p.grad is not None]
            coef = torch.clamp(clip / (total + 1e-6), max=1.0)
            torch._foreach_mul_(present, coef.to(present[0].device))
        self._norms.append(total)
        self._group_norms.append((self.groups.matrix @ per_param.float().pow(2)).sqrt())
        self._clip = clip
        self.watch.gradients(params, per_param)
        return total

    def _gradient_row(self) -> dict[str, torch.Tensor]:
        if not self._norms:
            return {}
        norms = torch.stack(self._norms).float()
        per_group = torch.stack(self._group_norms).float()
        clipped = (
            (norms >= self._clip).float().mean() if self._clip is not None else torch.zeros(())
        )
        self._norms, self._group_norms = [], []
        return {
            "grad_norm_mean": norms.mean(),
            "grad_norm_max": norms.max(),
            "grad_norm_p90": torch.quantile(norms, 0.9),
            "clip_fraction": clipped,
            **group_row(self.groups.names, per_group),
        }

    def epoch_metrics(self) -> dict[str, float]:
        """This epoch's columns (those measured); then the next epoch starts afresh."""
        row: dict[str, Any] = self._gradient_row()
        if self.updates is not None:
            row.update(self.updates.epoch())
        origin = self.watch.origin_index if self.nonfinite_origin is None else None
        if self._probe is not None:
            self.watch.armed = False  # the probe's own passes (the ladder) are not training
            try:
                last = self.updates.last_update() if self.updates is not None else None
                lr = self.updates.lr if self.updates is not None else None
                row.update(self._probe.measure(self.groups.params, last, lr))
            finally:
                self.watch.armed = True
        tensors = {k: v for k, v in row.items() if isinstance(v, torch.Tensor)}
        if origin is not None:
            tensors["(origin)"] = origin
        if tensors:
            device = self.groups.params[0].device
            stacked = torch.stack([v.reshape(()).double().to(device) for v in tensors.values()])
            row.update(zip(tensors, stacked.cpu().tolist()))
        index = row.pop("(origin)", -1)
        if index >= 0:
            self.nonfinite_origin = self.watch.names[int(index)]
            row[origin_column(self.nonfinite_origin)] = 1.0
        return {k: float(v) if v is not None else math.nan for k, v in row.items()}

    def close(self) -> None:
        """Remove the hooks from the model and the optimizer."""
        self.watch.close()
        if self.updates is not None:
            self.updates.close()
