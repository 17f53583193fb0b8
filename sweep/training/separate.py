"""The seeds of a setting trained as separate models (`packing=off`), one epoch at a time.

What is fixed by the seed alone (so a seed's curves are identical whether it is trained alone,
with other seeds, or resumed from a checkpoint, on the CPU): the initial weights, the order of
the training data (a per-seed generator), and the dropout masks (a per-seed RNG state swapped in
around each of its epochs).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch

from sweep.core.records import RunRecord
from sweep.tasks.data import TaskData
from sweep.tasks.scoring import batch_loss, item_correct, item_loss, step_mask
from sweep.training.accelerator import SeedRng
from sweep.training.epoch import (
    EVAL_BATCH,
    NO_EVALUATION,
    epoch_stats,
    nonfinite_check_steps,
    params_finite,
    sequence_sd,
    window_finite,
)
from sweep.training.gradients import ParamGroups
from sweep.training.models import RecurrentNet, accepts_targets, build_model, l2_penalty
from sweep.training.optim import build_optimizer, lr_at, set_lr
from sweep.training.origin import nonfinite_parameters, trace_origin
from sweep.training.signals import (
    critical_lr,
    probe_due,
    probe_for,
    probe_row,
    read_row,
    step_recorder,
    warn_no_probe,
)
from sweep.training.spec import SettingSpec


class SeedTrainer:
    """Model, optimizer, data order and RNG state of one seed, trained one epoch at a time."""

    def __init__(
        self,
        task: TaskData,
        spec: SettingSpec,
        seed: int,
        device: torch.device,
        check_every: int | None = None,
    ) -> None:
        self.task = task
        self.spec = spec
        self.seed = seed
        self.device = device
        self.lr = spec.lr
        self.clip = spec.clip
        self.batch_size = spec.batch_size
        self.model = build_model(spec.model, task, seed).to(device)
        # Sequence lengths stay on the device: a forward model gathers them there (a host copy
        # per step would wait for the GPU). Only a bidirectional model packs its batch, and
        # pack_padded_sequence reads lengths on the host: it gets a host copy, gathered there.
        self.host_lengths = (
            (task.lengths_train.cpu(), task.lengths_val.cpu())
            if task.lengths_train is not None and getattr(self.model, "directions", 1) == 2
            else None
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.weights = [p for p in self.params if p.dim() >= 2]
        self.groups = ParamGroups.of(self.model, self.params)  # per-layer gradient norms
        self.teacher = accepts_targets(self.model)  # forward(..., targets=) in training
        self.optimizer = build_optimizer(self.params, spec.optimizer, self.lr, device, self.groups)
        self.data_gen = torch.Generator().manual_seed(seed)  # data order: CPU generator
        self.rng = SeedRng(seed, device)  # the seed's own dropout stream, swapped in per epoch
        self.steps_per_epoch = math.ceil(task.n_train / self.batch_size)
        self.total_steps = self.steps_per_epoch * spec.epochs
        self.step = 0
        self.record = RunRecord(seed=seed)
        self.check_every = check_every or nonfinite_check_steps(device)
        # Issue 26's signals: update ratios per step (the weights before each of the last
        # check_every steps kept for the non-finite replay), and probe signals per epoch.
        self.builtin = isinstance(self.model, RecurrentNet)
        self.signals = step_recorder(
            spec.signals,
            self.params,
            self.groups.matrix,
            self.groups.names,
            self.check_every,
            False,
        )
        self.probe = probe_for(spec.signals, task)

    @property
    def stopped(self) -> bool:
        return self.record.nonfinite is not None or self.record.epochs_run >= self.spec.epochs

    # -- one epoch ------------------------------------------------------------------------------

    def run_epoch(self) -> None:
        started = time.perf_counter()
        with self.rng.active():
            row, nonfinite = self._train_epoch()
            if nonfinite is None and not params_finite(self.params):
                nonfinite = "parameters"
                self.record.nonfinite_origin = nonfinite_parameters(self.model, self.builtin)
            if nonfinite is None:
                row.update(self._evaluate())
                row.update(self._probe_signals(row["epoch_lr"]))
            else:
                row.update(NO_EVALUATION)
        self.record.append(row)
        if nonfinite is not None:
            self.record.nonfinite = nonfinite
            self.record.nonfinite_epoch = self.record.epochs_run
        self.record.steps = self.step
        self.record.seconds += time.perf_counter() - started

    def _lengths(self, split: int, idx: Any, host_idx: Any) -> torch.Tensor | None:
        """Lengths of the sequences `idx` (device index tensor or slice; `host_idx` the same on
        the host) of split 0 (train) or 1 (validation), where the model reads them: on the
        device, or on the host for a model that packs its batch."""
        lengths = (self.task.lengths_train, self.task.lengths_val)[split]
        if lengths is None:
            return None
        if self.host_lengths is not None:
            return self.host_lengths[split][host_idx]
        return lengths[idx]

    def _train_epoch(self) -> tuple[dict[str, float], str | None]:
        task, dev = self.task, self.device
        self.model.train()
        n = task.n_train
        perm_cpu = torch.randperm(n, generator=self.data_gen)
        perm = perm_cpu.to(dev, non_blocking=True)
        losses: list[torch.Tensor] = []  # per-step device scalars, stacked once per epoch
        norms: list[torch.Tensor] = []
        group_norms: list[torch.Tensor] = []
        self.signals.start_epoch(self.steps_per_epoch, 1, dev)
        clip = self.clip
        constant_lr = self.spec.schedule.name == "constant"
        if constant_lr:
            set_lr(self.optimizer, self.lr)
        first_step = self.step
        for s in range(self.steps_per_epoch):
            if not constant_lr:
                set_lr(
                    self.optimizer, lr_at(self.spec.schedule, self.step, self.total_steps, self.lr)
                )
            loss, objective = self._loss(s, perm, perm_cpu)
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            norm, per_group = self.groups.clip(clip)
            self.signals.before(s)
            self.optimizer.step()
            self.signals.after(s)
            losses.append(loss.detach())
            norms.append(norm.detach())
            group_norms.append(per_group.detach())
            self.step += 1
            if len(losses) % self.check_every == 0 and not window_finite(
                losses, norms, self.check_every
            ):
                break
        row, nonfinite, first_bad = epoch_stats(
            torch.stack(losses),
            torch.stack(norms),
            clip,
            self.optimizer.param_groups[0]["lr"],
            torch.stack(group_norms),
            self.groups.names,
        )
        if (
            first_bad is not None
        ):  # the run ends at its first non-finite step, whenever it was noticed
            self.step = first_step + first_bad + 1
            self.record.nonfinite_origin = self._origin(first_bad, perm, perm_cpu)
        extra = self.signals.row(first_bad if first_bad is not None else len(losses))
        if first_bad is None and self._probe_due():
            extra.update(self._critical_lr(perm, perm_cpu, row["epoch_lr"]))
        row.update(read_row(extra))
        return row, nonfinite

    def _loss(
        self, s: int, perm: torch.Tensor, perm_cpu: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of step `s` of the epoch's order `perm` (forward pass), and the objective
        that is differentiated (the loss, plus the l2 penalty when set)."""
        task, dev = self.task, self.device
        lo, hi = s * self.batch_size, min(task.n_train, (s + 1) * self.batch_size)
        idx = perm[lo:hi]
        xb = task.x_train.index_select(0, idx)
        yb = task.y_train.index_select(0, idx)
        lb = self._lengths(0, idx, perm_cpu[lo:hi])
        out = self.model(xb, lb, targets=yb) if self.teacher else self.model(xb, lb)
        mask = (
            step_mask(lb.to(dev) if lb is not None else None, xb.shape[0], xb.shape[1], dev)
            if task.per_step
            else None
        )
        loss = batch_loss(task.kind, out, yb, mask)
        l2 = self.spec.optimizer.l2
        return loss, (loss + l2 * l2_penalty(self.weights) if l2 else loss)

    def _origin(self, s: int, perm: torch.Tensor, perm_cpu: torch.Tensor) -> str:
        """Where the NaN/inf of step `s` appeared first: the step replayed, with hooks, from the
        weights it started from (kept by the signal recorder); then the weights are put back."""
        before = self.signals.before_weights(s)
        if before is None:  # signals off: nothing kept to replay from
            return ""
        with torch.no_grad():
            after = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, before)
        try:
            return trace_origin(self.model, lambda: self._loss(s, perm, perm_cpu)[1], self.builtin)
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, after)
            self.optimizer.zero_grad(set_to_none=True)

    def _probe_due(self) -> bool:
        return probe_due(self.spec.signals, self.record.epochs_run + 1, self.spec.epochs)

    def _critical_lr(
        self, perm: torch.Tensor, perm_cpu: torch.Tensor, lr: float
    ) -> dict[str, torch.Tensor]:
        """crit_lr along the epoch's last update, on that update's own batch (evaluation mode)."""
        last = self.steps_per_epoch - 1
        before = self.signals.before_weights(last)
        if before is None:
            return {}
        self.model.eval()
        try:
            with torch.no_grad():
                crit = critical_lr(
                    lambda: self._loss(last, perm, perm_cpu)[0], self.params, before, lr
                )
        finally:
            self.model.train()
        return {"crit_lr": crit}

    def _probe_signals(self, lr: float) -> dict[str, float]:
        """sat_frac and logit_lse on the probe batch, on the epochs they are due."""
        if self.probe is None or not self._probe_due():
            return {}
        lengths = self.probe.lengths
        if lengths is not None and self.host_lengths is not None:
            lengths = lengths.cpu()
        try:
            return read_row(probe_row(self.model, self.probe, lengths))
        except Exception as e:  # a model the probe cannot read: without those signals
            warn_no_probe(f"{type(e).__name__}: {e}")
            self.probe = None
            return {}

    @torch.no_grad()
    def _evaluate(self) -> dict[str, float]:
        task, dev = self.task, self.device
        self.model.eval()
        n = task.x_val.shape[0]
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev)
        items = torch.zeros((), device=dev)
        seq_sq = torch.zeros((), device=dev)  # sum of squared per-sequence losses
        seq_sum = torch.zeros((), device=dev)
        counts = torch.zeros(task.output_dim, device=dev) if task.is_classification else None
        for lo in range(0, n, EVAL_BATCH):
            xb = task.x_val[lo : lo + EVAL_BATCH]
            yb = task.y_val[lo : lo + EVAL_BATCH]
            rows = slice(lo, lo + EVAL_BATCH)
            lb = self._lengths(1, rows, rows)
            out = self.model(xb, lb)
            il = item_loss(task.kind, out, yb)
            ic = item_correct(task.kind, out, yb, task.tolerance)
            if task.per_step:
                m = step_mask(lb.to(dev) if lb is not None else None, xb.shape[0], xb.shape[1], dev)
                per_seq = (il * m).sum(1) / m.sum(1).clamp_min(1)
                il, ic = il[m], ic[m]
                preds = out.argmax(-1)[m] if counts is not None else None
            else:
                per_seq = il
                preds = out.argmax(-1) if counts is not None else None
            loss_sum += il.sum()
            correct += ic.sum()
            items += il.numel()
            seq_sum += per_seq.sum()
            seq_sq += (per_seq * per_seq).sum()
            if counts is not None:
                counts += torch.bincount(preds.reshape(-1), minlength=task.output_dim)
        top = (
            counts.max() / counts.sum().clamp_min(1)
            if counts is not None
            else torch.tensor(math.nan, device=dev)
        )
        sd = sequence_sd(seq_sum, seq_sq, n)
        vals = torch.stack([loss_sum / items, correct / items, top.to(loss_sum.dtype), sd]).tolist()
        val_loss, val_acc, top_frac, loss_sd = vals
        if not math.isfinite(val_loss):  # finite parameters can still overflow the output
            val_acc, top_frac, loss_sd = math.nan, math.nan, math.nan
        return {
            "val_loss": val_loss,
            "val_acc": val_acc,
            "pred_top_frac": top_frac,
            "val_loss_sd": loss_sd,
        }

    # -- checkpointing --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "data_gen": self.data_gen.get_state(),
            "rng_state": self.rng.state_dict(),
            "step": self.step,
            "record": dataclasses.asdict(self.record),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.data_gen.set_state(state["data_gen"])
        self.step = int(state["step"])
        self.rng.load_state_dict(state["rng_state"], self.step)
        self.record = RunRecord(**state["record"])


class SeedGroup:
    """The seeds of a setting trained as separate models (`packing=off`), epoch by epoch."""

    mode = "separate"

    def __init__(
        self,
        task: TaskData,
        spec: SettingSpec,
        device: torch.device,
        check_every: int | None = None,
    ) -> None:
        self.trainers = [SeedTrainer(task, spec, s, device, check_every) for s in spec.seeds]

    @property
    def stopped(self) -> bool:
        return all(t.stopped for t in self.trainers)

    def run_epoch(self) -> None:
        for t in self.trainers:
            if not t.stopped:
                t.run_epoch()

    def records_list(self) -> list[RunRecord]:
        return [t.record for t in self.trainers]

    def state_dict(self) -> dict[str, Any]:
        return {"seeds": [t.state_dict() for t in self.trainers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for t, st in zip(self.trainers, state["seeds"]):
            t.load_state_dict(st)
