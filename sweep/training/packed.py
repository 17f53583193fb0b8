"""All seeds of one setting trained as one packed model (`packing=on`).

Every weight gets a leading seed dimension S; the recurrence runs as batched matrix products
(`torch.baddbmm`), so one kernel does the work of S small ones. This is what keeps a GPU busy
with small LSTMs, where training one model at a time leaves it waiting on kernel launches.

What stays exactly as in separate training (`packing=off`):
- each seed's initial weights (copied from the seed's own `RecurrentNet`);
- each seed's data order (its own generator, the same permutations);
- per-seed global-norm clipping (PyTorch's formula: coef = min(1, clip / (norm + 1e-6)));
- per-seed loss, gradient norm, accuracy, and non-finite detection: the seeds share no
  arithmetic (the summed loss has gradient 1 for every seed's term), so a NaN in one seed
  never reaches another; a non-finite seed is cut out of the pack at once.
What differs: dropout masks are drawn for the whole pack (same distribution, other values), and
the floating-point summation order (results agree within float tolerance, not bit for bit).

Usage: `PackedTrainer(task, spec, device)` then `run_epoch()` until `stopped`, exactly like a
`SeedGroup` of separate models; `train_spec` picks one or the other.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch
from torch import nn

from sweep.core.records import RunRecord
from sweep.tasks.data import TaskData
from sweep.tasks.scoring import batch_loss, item_correct, item_loss
from sweep.training.accelerator import SeedRng
from sweep.training.epoch import (
    EVAL_BATCH,
    NO_EVALUATION,
    epoch_stats,
    nonfinite_check_steps,
    sequence_sd,
)
from sweep.training.gradients import ParamGroups
from sweep.training.models import build_model
from sweep.training.optim import build_optimizer, lr_at, set_lr
from sweep.training.origin import nonfinite_parameters, trace_origin
from sweep.training.packed_net import PackedRecurrentNet, per_param_squares, per_seed_norm
from sweep.training.signals import (
    critical_lr,
    packed_probe_row,
    probe_due,
    probe_for,
    read_row,
    step_recorder,
    warn_no_probe,
)
from sweep.training.spec import SettingSpec


class PackedTrainer:
    """Trains the seeds of one setting as one PackedRecurrentNet, one epoch at a time."""

    mode = "packed"

    def __init__(
        self,
        task: TaskData,
        spec: SettingSpec,
        device: torch.device,
        check_every: int | None = None,
    ) -> None:
        self.task, self.spec, self.device = task, spec, device
        seeds = list(spec.seeds)
        self.lr, self.clip, self.batch_size = spec.lr, spec.clip, spec.batch_size
        self.model = PackedRecurrentNet([build_model(spec.model, task, s) for s in seeds]).to(
            device
        )
        # Per-layer gradient norms, grouped as for one seed's network (embed, rnn.l<k>, head).
        self.groups = ParamGroups.of(self.model, list(self.model.parameters()), builtin=True)
        self.optimizer = build_optimizer(
            self.model.parameters(), spec.optimizer, self.lr, device, self.groups
        )
        self.seeds = list(seeds)
        self.alive = list(seeds)  # seeds still in the pack, in pack order
        self.gens = {s: torch.Generator().manual_seed(s) for s in seeds}
        self.rng = SeedRng(seeds[0], device)  # one dropout stream for the whole pack
        self.records = {s: RunRecord(seed=s) for s in seeds}
        self.steps_per_epoch = math.ceil(task.n_train / self.batch_size)
        self.total_steps = self.steps_per_epoch * spec.epochs
        self.step = 0
        self.check_every = check_every or nonfinite_check_steps(device)
        # Issue 26's signals: per-step update ratios (and the weights before each of the last
        # check_every steps, for the non-finite replay), per-epoch probe signals.
        self.signals = step_recorder(
            spec.signals,
            list(self.model.parameters()),
            self.groups.matrix,
            self.groups.names,
            self.check_every,
            True,
        )
        self.probe = probe_for(spec.signals, task)

    @property
    def stopped(self) -> bool:
        return not self.alive or all(
            self.records[s].epochs_run >= self.spec.epochs for s in self.alive
        )

    def records_list(self) -> list[Any]:
        return [self.records[s] for s in self.seeds]

    def run_epoch(self) -> None:
        started = time.perf_counter()
        members = list(self.alive)  # the pack at the start of the epoch
        with self.rng.active():
            rows, bad = self._train_epoch()
            evals = self._evaluate() if self.alive else {}
            if self.alive:
                evals.update(self._probe_signals())
        for seed in members:
            rec, row = self.records[seed], rows[seed]
            if seed in bad:
                row.update(NO_EVALUATION)
                rec.append(row)
                rec.nonfinite, rec.nonfinite_epoch = bad[seed], rec.epochs_run
            else:
                k = self.alive.index(seed)
                row.update({key: v[k] for key, v in evals.items()})
                rec.append(row)
                rec.steps = self.step
            rec.seconds += (time.perf_counter() - started) / len(members)

    def _train_epoch(self) -> tuple[dict[int, dict[str, float]], dict[int, str]]:
        """One epoch of the pack; a seed that turns non-finite is cut out at once, the others
        finish the epoch. Returns each member's epoch row and the non-finite seeds."""
        task, dev = self.task, self.device
        self.model.train()
        n = task.n_train
        members = list(self.alive)
        perms = {s: torch.randperm(n, generator=self.gens[s]) for s in members}
        order = torch.stack([perms[s] for s in members]).to(dev, non_blocking=True)
        losses = torch.zeros(self.steps_per_epoch, len(members), device=dev)
        norms = torch.zeros(self.steps_per_epoch, len(members), device=dev)
        group_norms = torch.zeros(
            self.steps_per_epoch, len(self.groups.names), len(members), device=dev
        )
        cols = torch.arange(len(members), device=dev)  # buffer column of each pack member
        self.signals.start_epoch(self.steps_per_epoch, len(members), dev)
        steps_done = dict.fromkeys(members, self.steps_per_epoch)
        first_step = self.step
        checked = 0  # buffer rows up to here were checked already
        for step in range(self.steps_per_epoch):
            idx = order[cols, step * self.batch_size : (step + 1) * self.batch_size]
            per_seed, norm, per_group = self._step(idx, step, cols)
            losses[step, cols] = per_seed.detach()
            norms[step, cols] = norm.detach()
            group_norms[step][:, cols] = per_group.detach()
            self.step += 1
            last = step == self.steps_per_epoch - 1
            if (step + 1) % self.check_every == 0 or last:
                # Every step since the last check: an inf gradient norm at one step makes the
                # clipping coefficient 0, so the steps after it look finite again.
                window = losses[checked : step + 1, cols] + norms[checked : step + 1, cols]
                finite = torch.isfinite(window).all(0).tolist()
                window_start, checked = checked, step + 1
                if not all(finite):
                    dead = [s for s, ok in zip(self.alive, finite) if not ok]
                    for s in dead:
                        steps_done[s] = step + 1
                    self._trace(dead, losses, norms, cols, order, window_start)
                    cols = cols[[k for k, ok in enumerate(finite) if ok]]
                    self._drop(dead)
                    if not self.alive:
                        break
        lr = self.optimizer.param_groups[0]["lr"]
        crit = self._critical_lr(order, cols, lr) if self.alive else {}
        rows, bad = {}, {}
        for k, seed in enumerate(members):
            done = steps_done[seed]
            row, nonfinite, first_bad = epoch_stats(
                losses[:done, k],
                norms[:done, k],
                self.clip,
                lr,
                group_norms[:done, :, k],
                self.groups.names,
            )
            extra = self.signals.row(first_bad if first_bad is not None else done, k)
            if seed in self.alive and nonfinite is None:
                extra.update({key: v[self.alive.index(seed)] for key, v in crit.items()})
            row.update(read_row(extra))
            rows[seed] = row
            if nonfinite is not None:
                bad[seed] = nonfinite
                self.records[seed].steps = first_step + first_bad + 1
        # Every flagged seed leaves the pack, however its non-finite step was noticed.
        flagged = [s for s in bad if s in self.alive]
        if flagged:
            self._drop(flagged)
        if self.alive:  # parameters can overflow with finite gradients: checked once per epoch
            finite = (
                torch.stack(
                    [
                        p.detach().reshape(len(self.alive), -1).isfinite().all(1)
                        for p in self.model.parameters()
                    ]
                )
                .all(0)
                .tolist()
            )
            overflow = [s for s, ok in zip(self.alive, finite) if not ok]
            for s in overflow:
                bad[s] = "parameters"
                self.records[s].steps = self.step
                self.records[s].nonfinite_origin = nonfinite_parameters(self._seed_net(s), True)
            if overflow:
                self._drop(overflow)
        return rows, bad

    def _batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Inputs, targets and valid-step mask of batch indices idx [S, B]."""
        task, dev = self.task, self.device
        xb = task.x_train[idx]
        yb = task.y_train[idx]
        mask = None
        if task.lengths_train is not None:
            mask = torch.arange(xb.shape[2], device=dev) < task.lengths_train[idx][..., None]
        return xb, yb, mask

    def _step(
        self, idx: torch.Tensor, step: int, cols: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step of the pack on batch indices idx [S, B] (step `step` of the epoch,
        buffer columns `cols`); per-seed loss, norm and [G, S] group norms."""
        xb, yb, mask = self._batch(idx)
        set_lr(self.optimizer, lr_at(self.spec.schedule, self.step, self.total_steps, self.lr))
        per_seed = self._loss(self.model(xb, mask), yb, mask)
        objective = per_seed.sum()  # each seed's gradient is that of its own loss
        if self.spec.optimizer.l2:
            s = len(self.alive)
            objective = (
                objective
                + self.spec.optimizer.l2
                * torch.stack(
                    [(w * w).reshape(s, -1).sum(1) for w in self.model.weight_matrices()]
                ).sum()
            )
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        grads = [p.grad for p in self.model.parameters()]
        squares = per_param_squares(grads)
        norm = per_seed_norm(grads, squares)
        if self.clip is not None:
            coef = torch.clamp(self.clip / (norm + 1e-6), max=1.0)
            torch._foreach_mul_(
                grads, [coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype) for g in grads]
            )
        self.signals.before(step)
        self.optimizer.step()
        self.signals.after(step, cols)
        return per_seed, norm, (self.groups.matrix @ squares).sqrt()

    # -- the signals of why a seed collapsed (sweep.training.signals, sweep.training.origin) ----

    def _seed_net(self, seed: int) -> nn.Module:
        """Seed `seed`'s own network with its current weights in the pack."""
        net = build_model(self.spec.model, self.task, seed).to(self.device)
        return self.model.copy_seed_into(self.alive.index(seed), net)

    def _trace(
        self,
        dead: list[int],
        losses: torch.Tensor,
        norms: torch.Tensor,
        cols: torch.Tensor,
        order: torch.Tensor,
        start: int,
    ) -> None:
        """nonfinite_origin of each seed found non-finite at a check (before it leaves the pack):
        its first non-finite step of the window from `start`, replayed on its own network from
        the weights that step started from."""
        for seed in dead:
            k = self.alive.index(seed)
            col = int(cols[k])
            window = losses[start:, col] + norms[start:, col]
            bad = (~torch.isfinite(window)).nonzero()
            if bad.numel():
                origin = self._replay(seed, k, start + int(bad[0, 0]), order[col])
                self.records[seed].nonfinite_origin = origin

    def _replay(self, seed: int, k: int, step: int, order: torch.Tensor) -> str:
        """The origin of seed `seed`'s (pack slot k) NaN/inf at step `step` of the epoch (its
        data order `order`): the step replayed on its own network, from the weights it started
        from (kept by the signal recorder); "" when they were not kept."""
        before = self.signals.before_weights(step)
        if before is None:
            return ""
        net = build_model(self.spec.model, self.task, seed).to(self.device)
        params = list(self.model.parameters())
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            torch._foreach_copy_(params, before)
            self.model.copy_seed_into(k, net)
            torch._foreach_copy_(params, saved)
        idx = order[step * self.batch_size : (step + 1) * self.batch_size]
        x, y = self.task.x_train[idx], self.task.y_train[idx]
        lengths = self.task.lengths_train[idx] if self.task.lengths_train is not None else None
        host = lengths.cpu() if lengths is not None and net.directions == 2 else lengths
        mask = (
            torch.arange(x.shape[1], device=self.device)[None, :] < lengths[:, None]
            if lengths is not None and self.task.per_step
            else None
        )
        net.train()
        return trace_origin(net, lambda: batch_loss(self.task.kind, net(x, host), y, mask), True)

    def _critical_lr(
        self, order: torch.Tensor, cols: torch.Tensor, lr: float
    ) -> dict[str, torch.Tensor]:
        """crit_lr ([S] over the pack) along the epoch's last update, on that update's batch."""
        last = self.steps_per_epoch - 1
        before = self.signals.before_weights(last)
        if before is None or not probe_due(
            self.spec.signals, self.records[self.alive[0]].epochs_run + 1, self.spec.epochs
        ):
            return {}
        idx = order[cols, last * self.batch_size : (last + 1) * self.batch_size]
        xb, yb, mask = self._batch(idx)
        self.model.eval()
        try:
            crit = critical_lr(
                lambda: self._loss(self.model(xb, mask), yb, mask),
                list(self.model.parameters()),
                before,
                lr,
            )
        finally:
            self.model.train()
        return {"crit_lr": crit}

    def _probe_signals(self) -> dict[str, list[float]]:
        """sat_frac and logit_lse of every seed in the pack, on the epochs they are due."""
        if self.probe is None or not probe_due(
            self.spec.signals, self.records[self.alive[0]].epochs_run + 1, self.spec.epochs
        ):
            return {}
        try:
            row = packed_probe_row(self.model, self.probe)
        except Exception as e:  # the probe is an aid: training goes on without it
            warn_no_probe(f"{type(e).__name__}: {e}")
            self.probe = None
            return {}
        values = torch.stack([v.float() for v in row.values()]).tolist()
        return {
            key: [x if math.isfinite(x) else math.nan for x in v] for key, v in zip(row, values)
        }

    def _loss(self, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """[S]: each seed's mean loss over its batch (masked steps excluded for per-step targets)."""
        losses = item_loss(self.task.kind, out, y)  # [S, B] or [S, B, T]
        s = losses.shape[0]
        if self.task.per_step and mask is not None:
            m = mask.to(losses.dtype)
            return (losses * m).reshape(s, -1).sum(1) / m.reshape(s, -1).sum(1).clamp_min(1.0)
        return losses.reshape(s, -1).mean(1)

    @torch.no_grad()
    def _evaluate(self) -> dict[str, list[float]]:
        task, dev = self.task, self.device
        self.model.eval()
        s = len(self.alive)
        n = task.x_val.shape[0]
        loss_sum = torch.zeros(s, device=dev)
        correct = torch.zeros(s, device=dev)
        items = torch.zeros(s, device=dev)
        seq_sum = torch.zeros(s, device=dev)
        seq_sq = torch.zeros(s, device=dev)
        counts = torch.zeros(s, task.output_dim, device=dev) if task.is_classification else None
        for lo in range(0, n, EVAL_BATCH):
            xb = task.x_val[lo : lo + EVAL_BATCH]
            yb = (
                task.y_val[lo : lo + EVAL_BATCH]
                .unsqueeze(0)
                .expand(s, *task.y_val[lo : lo + EVAL_BATCH].shape)
            )
            xs = xb.unsqueeze(0).expand(s, *xb.shape)
            mask = None
            if task.lengths_val is not None:
                lens = task.lengths_val[lo : lo + EVAL_BATCH]
                mask = (
                    (torch.arange(xb.shape[1], device=dev) < lens[:, None])
                    .unsqueeze(0)
                    .expand(s, -1, -1)
                )
            out = self.model(xs, mask)
            il = item_loss(task.kind, out, yb)
            ic = item_correct(task.kind, out, yb, task.tolerance).to(il.dtype)
            if task.per_step:
                m = (
                    mask if mask is not None else torch.ones(il.shape, dtype=torch.bool, device=dev)
                ).to(il.dtype)
                il, ic = il * m, ic * m
                items += m.reshape(s, -1).sum(1)
                per_seq = il.sum(2) / m.sum(2).clamp_min(1)  # [S, B]
            else:
                items += il.shape[1]
                per_seq = il
            loss_sum += il.reshape(s, -1).sum(1)
            correct += ic.reshape(s, -1).sum(1)
            seq_sum += per_seq.sum(1)
            seq_sq += (per_seq * per_seq).sum(1)
            if counts is not None:
                pred = out.argmax(-1).reshape(s, -1)
                valid = m.reshape(s, -1) if task.per_step else torch.ones_like(pred, dtype=il.dtype)
                counts.scatter_add_(1, pred, valid.to(counts.dtype))
        val_loss = loss_sum / items
        val_acc = correct / items
        top = (
            counts.max(1).values / counts.sum(1).clamp_min(1)
            if counts is not None
            else torch.full((s,), math.nan, device=dev)
        )
        sd = sequence_sd(seq_sum, seq_sq, n)
        val_loss, val_acc, top, sd = torch.stack(
            [val_loss, val_acc, top.to(val_loss.dtype), sd]
        ).tolist()
        usable = [math.isfinite(v) for v in val_loss]
        val_acc, top, sd = (
            [x if ok else math.nan for x, ok in zip(col, usable)] for col in (val_acc, top, sd)
        )
        return {"val_loss": val_loss, "val_acc": val_acc, "pred_top_frac": top, "val_loss_sd": sd}

    def _drop(self, dead: list[int]) -> None:
        """Cut non-finite seeds out of the pack: their slices of weights and optimizer state."""
        keep = [i for i, s in enumerate(self.alive) if s not in dead]
        self.alive = [self.alive[i] for i in keep]
        if not keep:
            return
        index = torch.tensor(keep, device=self.device)
        state = self.optimizer.state_dict()
        # New leaf tensors: autograd remembers the shape of a parameter it has seen.
        for name, p in list(self.model.named_parameters()):
            setattr(self.model, name, nn.Parameter(p.detach().index_select(0, index)))
        for entry in state["state"].values():
            for key, value in entry.items():
                if (
                    torch.is_tensor(value)
                    and value.dim() >= 1
                    and value.shape[0] == len(keep) + len(dead)
                ):
                    entry[key] = value.index_select(0, index.to(value.device))
        self.groups = ParamGroups.of(self.model, list(self.model.parameters()), builtin=True)
        self.optimizer = build_optimizer(
            self.model.parameters(), self.spec.optimizer, self.lr, self.device, self.groups
        )
        self.optimizer.load_state_dict(state)
        self.signals = self.signals.rebuilt(
            list(self.model.parameters()), self.groups.matrix, index
        )

    # -- checkpointing --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "alive": list(self.alive),
            "gens": {str(s): g.get_state() for s, g in self.gens.items()},
            "rng_state": self.rng.state_dict(),
            "step": self.step,
            "records": {str(s): dataclasses.asdict(r) for s, r in self.records.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        alive = [int(s) for s in state["alive"]]
        if len(alive) != len(self.alive):
            self._drop([s for s in self.alive if s not in alive])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for s, g in state["gens"].items():
            self.gens[int(s)].set_state(g)
        self.step = int(state["step"])
        self.rng.load_state_dict(state["rng_state"], self.step)
        self.records = {int(s): RunRecord(**r) for s, r in state["records"].items()}
