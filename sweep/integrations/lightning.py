"""A Lightning 2 callback that logs lrsweep's collapse signals with `pl_module.log`, so the
script's own CSVLogger writes them as columns (issue 26).

Usage, one line in a Lightning script::

    from sweep.integrations.lightning import CollapseSignals

    trainer = pl.Trainer(..., logger=CSVLogger(...), callbacks=[CollapseSignals()])

The columns are GradientMonitor's (sweep.trainers.gradients), logged once per training epoch
(`on_step=False, on_epoch=True`: Lightning writes them on the epoch-end row, and lrsweep's log
reader merges that row with the epoch's validation row):

- `grad_norm_mean`, `grad_norm_max`, `grad_norm_p90`, `clip_fraction`,
  `grad_norm_mean/<module>`, `grad_norm_max/<module>`: read in `on_before_optimizer_step`, which
  Lightning calls after backward and before it clips, so these are the norms before clipping;
  `clip_fraction` against the trainer's `gradient_clip_val` (NaN when it clips by value).
- `update_ratio`, `update_ratio/<module>`: every optimizer step, from the optimizer's own step
  hooks (the first optimizer's; groups: the LightningModule's top-level child modules).
- `crit_lr`: the critical step size of the epoch's last update on its own batch (from
  `on_train_batch_start`), as lrsweep's own loop measures it (sweep.training.signals); the loss
  is `loss_fn(outputs, targets)`, by default cross-entropy for class indices and mean squared
  error for float targets.
- `sat_frac`, `sat_frac/<module>.l<k>`, `logit_lse`: on the probe batch: `probe=(x, y)`, else 64
  items drawn once (fixed seed) from the first validation epoch's batches (the training batches
  without validation).
Batches must be `(inputs, targets)` pairs; the model is called as `pl_module(inputs)`.
- `nonfinite_origin/<module>` = 1.0 in the epoch where a module's forward output or a
  parameter's gradient first went NaN/inf.
"""

from __future__ import annotations

import math
import sys

import lightning.pytorch as pl
import torch

from sweep.core.signal_rules import PROBE_SIZE
from sweep.trainers.gradients import GradientMonitor
from sweep.trainers.saturation import RecurrentTap

GATHER = 16  # the probe is drawn from at most this many times its size of the first batches


def _say(message: str) -> None:
    print(f"lrsweep CollapseSignals: {message}", file=sys.stderr, flush=True)


class CollapseSignals(pl.Callback):
    """lrsweep's per-epoch collapse signals, logged at each training epoch's end."""

    def __init__(self, probe=None, loss_fn=None, probe_size: int = PROBE_SIZE, seed: int = 0):
        super().__init__()
        self.probe = probe
        self.loss_fn = loss_fn
        self.probe_size = probe_size
        self.seed = seed
        self.monitor: GradientMonitor | None = None
        self._gathered: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._from_validation = False
        self._told = False
        self._batch = None
        self._probe_set = False

    @property
    def nonfinite_origin(self) -> str | None:
        return self.monitor.nonfinite_origin if self.monitor is not None else None

    def on_fit_start(self, trainer, pl_module) -> None:
        optimizers = trainer.optimizers
        if len(optimizers) > 1:
            _say(f"{len(optimizers)} optimizers: update_ratio and crit_lr follow the first")
        optimizer = optimizers[0] if optimizers else None
        self.monitor = GradientMonitor(pl_module, optimizer, self.loss_fn)
        if self.probe is not None:
            self._set_probe(*self.probe)
        for line in RecurrentTap(pl_module).unsupported:
            _say(f"module {line}; its saturation is left out and training goes on")

    def _set_probe(self, x, y) -> None:
        self.monitor.probe(x, y)
        self._probe_set = True

    # ------------------------------------------------------------------- the probe, if not given

    def _gather(self, batch) -> None:
        if self._probe_set:
            return
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            if not self._told:
                _say(
                    "batches are not (inputs, targets) pairs: pass probe=(x, y) for the probe signals"
                )
                self._told = True
            return
        if sum(len(x) for x, _ in self._gathered) < GATHER * self.probe_size:
            x, y = batch
            self._gathered.append((x.detach().clone(), y.detach().clone()))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self._from_validation = True
            self._gather(batch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pair = isinstance(batch, (tuple, list)) and len(batch) == 2
        self._batch = tuple(batch) if pair else None  # for crit_lr, by reference
        if not self._from_validation and trainer.current_epoch == 0:
            self._gather(batch)

    def _draw_probe(self) -> None:
        if self._probe_set or not self._gathered:
            return
        x = torch.cat([a for a, _ in self._gathered])
        y = torch.cat([b for _, b in self._gathered])
        self._gathered = []
        if len(x) > self.probe_size:
            g = torch.Generator().manual_seed(self.seed)
            pick = torch.randperm(len(x), generator=g)[: self.probe_size].sort().values
            x, y = x[pick.to(x.device)], y[pick.to(y.device)]
        self._set_probe(x, y)

    # ---------------------------------------------------------------------------- steps, epochs

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        by_value = trainer.gradient_clip_algorithm == "value"
        clip = trainer.gradient_clip_val if not by_value else None
        self.monitor.record_gradients(clip_at=clip or None, batch=self._batch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._draw_probe()
        row = self.monitor.epoch_metrics()
        if trainer.gradient_clip_algorithm == "value" and "clip_fraction" in row:
            row["clip_fraction"] = math.nan
        if row:
            pl_module.log_dict(row, on_step=False, on_epoch=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.monitor is not None:
            self.monitor.close()
