"""The collapse signals of a user's own PyTorch loop, in lrsweep's columns, so that the report of a
function trainer shows the same figures and causes as the built-in loop's.

Usage, in a training function (`trainer._target_`)::

    from sweep import GradientMonitor

    monitor = GradientMonitor(model, optimizer, loss_fn)   # groups: the top-level child modules
    monitor.probe(x_val[:64])                        # once: the fixed probe batch (optional)
    for x, y in batches:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        monitor.clip(setting["clip"], batch=(x, y))  # records the norms before clipping, then clips
        optimizer.step()
    report(epoch, val_acc=acc, val_loss=vloss, train_loss=tl, **monitor.epoch_metrics())

What each part adds to `epoch_metrics()` (the columns of sweep.core.signal_rules, per epoch):

- `clip(max_norm)` (torch.nn.utils.clip_grad_norm_'s formula; None: no clipping), or
  `record_gradients(clip_at)` when something else clips: grad_norm_mean, grad_norm_max,
  grad_norm_p90, clip_fraction, grad_norm_mean/<group>, grad_norm_max/<group>.
- `optimizer` (its step hooks see every step): update_ratio, update_ratio/<group>, the mean over
  the epoch's steps of ||w_after - w_before|| / ||w_before||; and epoch_lr, the first parameter
  group's lr at the epoch's last step (a raise of the lr names a step too large, as in lrsweep's
  own loop; a loop that reports its own passes `{**monitor.epoch_metrics(), "epoch_lr": lr}`).
- `batch=(inputs, targets)` with `clip` (the batch the step trains on) and `loss_fn(outputs,
  targets)` (by default cross-entropy for class indices, mean squared error for float targets):
  crit_lr, the critical step size of the epoch's last update on its own batch, as lrsweep's own
  loop measures it (sweep.training.signals.critical_lr: lr/8 .. 8 lr by bisection, 16 lr when
  the loss rises nowhere).
- `probe(inputs, targets=None)`: sat_frac and sat_frac/<layer> of the nn.LSTM / nn.GRU /
  nn.RNN(tanh) modules and cells found in the model; logit_lse when `targets` are class indices.
  `inputs` (here and in `batch`) is what the model is called with (a tuple: several arguments).
- always: nonfinite_origin/<module> = 1.0 in the epoch where a module's forward output or a
  parameter's gradient first went NaN/inf (`nonfinite_origin` holds the module's name).

Values stay on the device during the epoch; `epoch_metrics()` reads them in one transfer (plus
one per crit_lr forward pass) and starts the next epoch afresh. `close()` removes the hooks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sweep.core.signal_rules import CRIT_LR, origin_column
from sweep.trainers.probe import LossFn, ProbeBatch, batch_loss, default_loss, on_device
from sweep.trainers.step_watch import NonfiniteWatch, UpdateTracker
from sweep.training.gradients import ParamGroups, group_row
from sweep.training.signals import critical_lr


class GradientMonitor:
    """Per-step gradient norms, update ratios and non-finite checks, and a probe batch's
    saturation, logits and critical step, summarised per epoch."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        loss_fn: LossFn | None = None,
    ) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("GradientMonitor: the model has no trainable parameters")
        self.model = model
        self.loss_fn = loss_fn
        self.groups = ParamGroups.of(model, params, builtin=False)
        self._norms: list[torch.Tensor] = []
        self._group_norms: list[torch.Tensor] = []
        self._clip: float | None = None
        self.updates = UpdateTracker(self.groups, optimizer) if optimizer is not None else None
        self.watch = NonfiniteWatch(model)
        self._probe: ProbeBatch | None = None
        self._batch: tuple[Any, torch.Tensor] | None = None  # the last step's (inputs, targets)
        self.nonfinite_origin: str | None = None  # the module where a NaN/inf first appeared

    def probe(self, inputs: Any, targets: torch.Tensor | None = None) -> None:
        """Fix the probe batch (once): what the model is called with, and its targets."""
        self._probe = ProbeBatch(self.model, inputs, targets)

    @property
    def probe_inputs(self) -> Any:
        """The probe batch's inputs, on the model's device (None before `probe()`)."""
        return self._probe.inputs if self._probe is not None else None

    def clip(self, max_norm: float | None, batch: tuple[Any, torch.Tensor] | None = None):
        """After `loss.backward()`: note the norms, clip the gradients to `max_norm` (None: leave
        them); returns the global norm before clipping (a device tensor). `batch`: this step's
        (inputs, targets), kept by reference for crit_lr."""
        self._batch = batch if batch is not None else self._batch
        return self._note(None if max_norm is None else float(max_norm), apply=True)

    def record_gradients(self, clip_at: float | None = None, batch=None) -> torch.Tensor:
        """Note the norms without clipping (something else clips at `clip_at`, or nothing)."""
        self._batch = batch if batch is not None else self._batch
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

    def _critical_lr(self) -> torch.Tensor | None:
        """crit_lr of the epoch's last update on its own batch (None: not measurable)."""
        last = self.updates.last_update() if self.updates is not None else None
        if last is None or self._batch is None or not self.updates.lr:
            return None
        inputs, targets = self._batch
        device = self.groups.params[0].device
        inputs, targets = on_device(inputs, device), on_device(targets, device)
        loss_fn = self.loss_fn or default_loss(targets)
        params = self.groups.params
        before = torch._foreach_sub([p.detach() for p in params], last)
        return critical_lr(
            lambda: batch_loss(self.model, inputs, targets, loss_fn),
            params,
            before,
            float(self.updates.lr),
        )

    def epoch_metrics(self) -> dict[str, float]:
        """This epoch's columns (those measured); then the next epoch starts afresh."""
        row: dict[str, Any] = self._gradient_row()
        if self.updates is not None:
            row.update(self.updates.epoch())
            if self.updates.lr is not None:  # the lr of the epoch's last step, as lrsweep's loop
                row["epoch_lr"] = torch.as_tensor(float(self.updates.lr))  # logs it (a raise)
        origin = self.watch.origin_index if self.nonfinite_origin is None else None
        self.watch.armed = False  # the probe's and crit_lr's own passes are not training
        try:
            crit = self._critical_lr()
            if crit is not None:
                row[CRIT_LR] = crit
            if self._probe is not None:
                row.update(self._probe.measure())
        finally:
            self.watch.armed = True
        if origin is not None:
            row["(origin)"] = origin
        if row:
            device = self.groups.params[0].device
            stacked = torch.stack([v.reshape(()).double().to(device) for v in row.values()])
            row = dict(zip(row, stacked.cpu().tolist()))
        index = row.pop("(origin)", -1)
        if index >= 0:
            self.nonfinite_origin = self.watch.names[int(index)]
            row[origin_column(self.nonfinite_origin)] = 1.0
        return row

    def close(self) -> None:
        """Remove the hooks from the model and the optimizer."""
        self.watch.close()
        if self.updates is not None:
            self.updates.close()
