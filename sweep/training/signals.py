"""The per-epoch signals of why a run collapsed (issue 26; docs/why-it-collapsed.md), measured in
lrsweep's own loop for separate (one network per seed) and packed (every seed stacked) training.

Usage (what `SeedTrainer` and `PackedTrainer` do)::

    rec = step_recorder(cfg.signals, params, groups.matrix, groups.names, window, stacked=False)
    rec.start_epoch(steps, members, device)                  # once per epoch
    rec.before(step); optimizer.step(); rec.after(step)      # every step: device ops, no host read
    rec.row(done)                                            # update_ratio, update_ratio/<group>
    critical_lr(loss_of_last_batch, params, rec.before_weights(last), lr)   # crit_lr
    probe = probe_for(cfg.signals, task)                     # once per run (None: no probe)
    probe_row(model, probe, lengths)                         # sat_frac(/<layer>), logit_lse
    read_row(row)                                            # one host read per epoch

Columns (the contract in docs/why-it-collapsed.md):
- `update_ratio`: the mean over the epoch's optimizer steps of ||w_after - w_before|| /
  ||w_before|| (L2 over all trainable parameters), measured on every step of an epoch of fewer
  than 2 x UPDATE_SAMPLES steps, else on every k-th step (k = steps // UPDATE_SAMPLES);
  `update_ratio/<group>` the same per parameter group.
- `sat_frac`: the share of saturated activations of the recurrent layers on the probe batch
  (sweep.training.saturation); `sat_frac/<layer>` per recurrent layer.
- `crit_lr`: the critical step size of the epoch's last update (Kalra et al. 2026): on that
  update's own batch and loss (a model taking `targets=` gets them), in evaluation mode (no
  dropout), along d = (w_after - w_before) / lr from w_before, the
  smallest step eta of the ladder lr * 2^k (k = -3..3) at which the loss exceeds the loss at
  w_before, found by bisection (3 forward passes, plus one at w_before). Censored at both ends:
  16 x lr when the loss rises nowhere on the ladder, lr / 8 when it rises already there. The update taken is eta = lr:
  `lr > crit_lr` says that step overshot, the loss of its own batch went up along it.
- `logit_lse`: the mean over probe items of logsumexp of the output logits (classification
  only: no column for regression).
Every value stays on the device until the epoch's row is read (one host read per epoch).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sweep.tasks.data import TaskData
from sweep.tasks.scoring import step_mask
from sweep.training.saturation import (
    capture_inputs,
    module_saturation,
    recurrent_modules,
    run_layers,
)

LADDER = tuple(2.0**k for k in range(-3, 4))  # crit_lr's candidate steps, in units of the lr
# The update ratio is measured on about this many steps of an epoch, evenly spaced (every step
# of an epoch of fewer than 2x this many): its cost per epoch stays bounded, its mean is not
# noisier than the epoch-to-epoch variation the autopsy judges it against.
UPDATE_SAMPLES = 20
RING_BYTES = 512 * 2**20  # at most this much memory for the weights kept before recent steps
_BISECTIONS = math.ceil(math.log2(len(LADDER) + 1))  # passes that pin the crossing on LADDER


# --------------------------------------------------------------------------- update / weight ratio


class UpdateSteps:
    """The weights before each of the last `window` steps (`ring[slot]`: the critical step size
    reads the last one, the non-finite replay the one before the failing step) and, per step,
    the squared norms that the update/weight ratios are made of.

    `stacked`: parameters carry a leading seed dimension (packed training), and every norm is
    per seed.
    """

    def __init__(self, params: Sequence[torch.Tensor], window: int, stacked: bool) -> None:
        self.params = [p for p in params]
        self.stacked = stacked
        with torch.no_grad():
            self.ring = [[torch.empty_like(p) for p in self.params] for _ in range(max(1, window))]

    def before(self, slot: int) -> None:
        """Before optimizer.step(): keep the weights."""
        with torch.no_grad():
            torch._foreach_copy_(self.ring[slot], [p.detach() for p in self.params])

    def after(self, slot: int) -> torch.Tensor:
        """After optimizer.step(): [2, P] squared norms of each parameter's update and of its
        weights before it ([2, P, S] per seed when stacked); a few operations per step, the
        ratios are formed once per epoch (`ratios`)."""
        with torch.no_grad():
            before = self.ring[slot]
            diff = list(torch._foreach_sub([p.detach() for p in self.params], before))
            if self.stacked:
                s = before[0].shape[0]
                return torch.stack(
                    [t.reshape(s, -1).float().pow(2).sum(1) for t in diff + before]
                ).view(2, len(before), s)
            return torch.stack(torch._foreach_norm(diff + before)).float().pow(2).view(2, -1)


def ratios(squares: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Per-step update/weight ratios [steps, 1 + G] (all parameters, then each group) from
    [steps, 2, P] squared norms of the updates and of the weights before them."""
    d2, w2 = squares[:, 0], squares[:, 1]
    m = matrix.float().t()
    d = torch.cat([d2.sum(-1, keepdim=True), d2 @ m], dim=-1).sqrt()
    w = torch.cat([w2.sum(-1, keepdim=True), w2 @ m], dim=-1).sqrt()
    return torch.where(w > 0, d / w, torch.full_like(d, math.nan))


def update_row(ratios: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The epoch's update columns from [steps, 1 + G] per-step ratios (steps may be 0: NaN)."""
    mean = (
        ratios.mean(0)
        if ratios.shape[0]
        else torch.full(ratios.shape[1:], math.nan, device=ratios.device)
    )
    row = {"update_ratio": mean[0]}
    for g, name in enumerate(names):
        row[f"update_ratio/{name}"] = mean[g + 1]
    return row


class StepRecorder:
    """A trainer's per-step signals over one epoch: the update norms in a device buffer, and
    the weights before the last `window` steps (`before_weights`)."""

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        matrix: torch.Tensor,
        names: Sequence[str],
        window: int,
        stacked: bool,
    ) -> None:
        self.names = list(names)
        self.matrix = matrix
        size = sum(p.numel() * p.element_size() for p in params)
        # The weights of the last `window` steps (a check's window), within RING_BYTES: a large
        # model of a user's keeps fewer (then a NaN noticed late gets no replay, only its step).
        self.window = max(1, min(window, RING_BYTES // max(1, size)))
        self.stacked = stacked
        self.updates = UpdateSteps(params, self.window, stacked)
        self.squares = torch.empty(0)
        self.stride = 1  # the update ratio is measured every `stride` steps (start_epoch)
        self.held: dict[int, int] = {}  # ring slot -> the step of this epoch whose weights it holds

    def rebuilt(
        self, params: Sequence[torch.Tensor], matrix: torch.Tensor, keep: torch.Tensor
    ) -> StepRecorder:
        """The same recorder for a pack without its dropped seeds: new parameter tensors, the
        kept weights of the seed slots `keep` (an index tensor); the epoch's buffer is kept."""
        other = StepRecorder(params, matrix, self.names, self.window, self.stacked)
        other.squares, other.stride = self.squares, self.stride
        with torch.no_grad():
            other.updates.ring = [
                [t.index_select(0, keep.to(t.device)) for t in slot] for slot in self.updates.ring
            ]
        other.held = dict(self.held)
        return other

    def start_epoch(self, steps: int, members: int, device: torch.device) -> None:
        shape = (steps, 2, len(self.updates.params)) + ((members,) if self.stacked else ())
        self.squares = torch.full(shape, math.nan, device=device)
        self.stride = max(1, steps // UPDATE_SAMPLES)
        self.held = {}

    def before(self, step: int) -> None:
        self.updates.before(step % self.window)
        self.held[step % self.window] = step

    def after(self, step: int, cols: torch.Tensor | None = None) -> None:
        if step % self.stride:
            return  # not one of the sampled steps
        squares = self.updates.after(step % self.window)
        if cols is None:
            self.squares[step] = squares
        else:
            self.squares[step][:, :, cols] = squares

    def row(self, done: int, column: int | None = None) -> dict[str, torch.Tensor]:
        """update_ratio and update_ratio/<group> over the epoch's first `done` steps (a pack's
        member `column`)."""
        squares = self.squares[: done : self.stride]
        if column is not None:
            squares = squares[:, :, :, column]
        return update_row(ratios(squares, self.matrix), self.names)

    def before_weights(self, step: int) -> list[torch.Tensor] | None:
        """The weights before step `step` of this epoch, if still kept (None otherwise)."""
        slot = step % self.window
        return self.updates.ring[slot] if self.held.get(slot) == step else None


class NullStepRecorder:
    """Signals switched off: nothing is kept or recorded."""

    def rebuilt(
        self, params: Sequence[torch.Tensor], matrix: torch.Tensor, keep: torch.Tensor
    ) -> NullStepRecorder:
        return self

    def start_epoch(self, steps: int, members: int, device: torch.device) -> None:
        pass

    def before(self, step: int) -> None:
        pass

    def after(self, step: int, cols: torch.Tensor | None = None) -> None:
        pass

    def row(self, done: int, column: int | None = None) -> dict[str, torch.Tensor]:
        return {}

    def before_weights(self, step: int) -> None:
        return None


def step_recorder(
    cfg: Any,
    params: Sequence[torch.Tensor],
    matrix: torch.Tensor,
    names: Sequence[str],
    window: int,
    stacked: bool,
) -> StepRecorder | NullStepRecorder:
    """The recorder `cfg` (a SignalsConfig, None: defaults) asks for."""
    if cfg is not None and not cfg.enabled:
        return NullStepRecorder()
    return StepRecorder(params, matrix, names, window, stacked)


def probe_for(cfg: Any, task: TaskData) -> Probe | None:
    """The run's probe batch, or None (signals off, probe_size 0, or it cannot be built)."""
    size = 64 if cfg is None else (cfg.probe_size if cfg.enabled else 0)
    return Probe.build(task, size) if size > 0 else None


def probe_due(cfg: Any, epoch: int, last: int) -> bool:
    """Are the probe signals measured in `epoch` (every `signals.every` epochs, and the last)?"""
    every = 1 if cfg is None else int(cfg.every)
    return epoch % every == 0 or epoch >= last


# --------------------------------------------------------------------------- the probe batch


@dataclass
class Probe:
    """A fixed batch of at most `size` sequences, read in evaluation mode without gradient: the
    first validation sequences (the training set's when there is no validation set)."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None  # on the device
    mask: torch.Tensor  # [B, T] valid steps
    kind: str
    per_step: bool

    @classmethod
    def build(cls, task: TaskData, size: int) -> Probe | None:
        """The probe of a run, or None (with one line on stderr) when it cannot be built: the
        signals that need it are then not recorded, and training goes on."""
        try:
            use_val = task.x_val.shape[0] > 0
            x, y = (task.x_val, task.y_val) if use_val else (task.x_train, task.y_train)
            lengths = task.lengths_val if use_val else task.lengths_train
            n = min(int(size), int(x.shape[0]))
            if n < 1:
                raise ValueError("the task has no sequences to read")
            lengths = lengths[:n] if lengths is not None else None
            mask = step_mask(lengths, n, int(x.shape[1]), x.device)
            return cls(x[:n], y[:n], lengths, mask, task.kind, task.per_step)
        except Exception as e:  # a probe is an aid: never a reason to stop training
            warn_no_probe(f"{type(e).__name__}: {e}")
            return None

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean over the probe's items of per-item values [(S,) B] or [(S,) B, T] (per-step
        targets: the valid steps only): 0-d, or [S] for a pack."""
        if self.per_step:
            w = self.mask.to(values.dtype).expand(values.shape)
            return (values * w).sum((-2, -1)) / w.sum((-2, -1)).clamp_min(1.0)
        return values.mean(-1)

    def lse(self, out: torch.Tensor) -> torch.Tensor:
        """Mean logsumexp of the logits over the probe's items (classification)."""
        return self.mean(torch.logsumexp(out.float(), dim=-1))


_WARNED: set[str] = set()  # one line per distinct reason and process, not one per seed


def warn_no_probe(why: str) -> None:
    if why in _WARNED:
        return
    _WARNED.add(why)
    print(
        f"warning: signals: the probe batch cannot be built ({why[:200]}); sat_frac, crit_lr and "
        f"logit_lse are not recorded for this run, training goes on",
        file=sys.stderr,
    )


# --------------------------------------------------------------------------- critical step size


@torch.no_grad()
def critical_lr(
    loss_at: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    before: Sequence[torch.Tensor],
    lr: float,
) -> torch.Tensor:
    """The critical step size of the last update (see the module docstring), on the device
    without host reads: 0-d for one network, [S] for a pack (each seed its own ladder).

    The line starts at the weights before the update (`before`) and follows the update taken,
    d = (w_after - w_before) / lr, where w_after are the parameters as they are: the update
    itself is the step eta = lr. `loss_at()` is the loss (of the update's own batch) at the
    parameters as they are set. The parameters are restored exactly (copied back) on return.
    """
    params = list(params)
    if not lr > 0 or not params:
        return torch.tensor(math.nan)
    after = [p.detach().clone() for p in params]
    start = list(before)
    direction = torch._foreach_sub(after, start)
    torch._foreach_div_(direction, float(lr))
    try:
        torch._foreach_copy_(params, start)
        base = loss_at()
        device = base.device
        etas = torch.tensor([lr * k for k in LADDER], device=device, dtype=torch.float32)
        top = len(LADDER)
        lo = torch.full(base.shape, -1, dtype=torch.long, device=device)
        hi = torch.full(base.shape, top, dtype=torch.long, device=device)
        for _ in range(_BISECTIONS):
            mid = torch.div(lo + hi, 2, rounding_mode="floor")
            eta = _take(etas, mid.clamp(0, top - 1))
            for p, a, d in zip(params, start, direction):
                scale = eta.reshape(eta.shape + (1,) * (d.dim() - eta.dim())).to(d.dtype)
                p.copy_(a + scale * d)
            rise = ~(loss_at() <= base)  # a non-finite loss is a rise
            hi = torch.where(rise, mid, hi)
            lo = torch.where(rise, lo, mid)
    finally:
        torch._foreach_copy_(params, after)
    # No rise anywhere on the ladder: censored at the next rung (2 x its top), "beyond 8 x lr".
    crit = torch.where(hi < top, _take(etas, hi.clamp(max=top - 1)), etas[-1] * 2.0)
    return torch.where(torch.isfinite(base), crit, torch.full_like(crit, math.nan))


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index] for an index tensor of any shape (a 0-d one too) without a host read (a 0-d
    index tensor in [] is read as a Python int)."""
    return values.index_select(0, index.reshape(-1)).reshape(index.shape)


# --------------------------------------------------------------------------- one network's probe row


@torch.no_grad()
def probe_row(
    model: nn.Module, probe: Probe, lengths: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """sat_frac (and per recurrent layer) and logit_lse of one network on the probe (device
    tensors); `lengths`: the probe's lengths as the model reads them."""
    was_training = model.training
    model.eval()
    captured = capture_inputs(model)
    try:
        out = model(probe.x, lengths)
    finally:
        captured.release()
        model.train(was_training)
    row = {"logit_lse": probe.lse(out)} if probe.kind == "classification" else {}
    row.update(_saturation_row(model, captured.calls, probe.mask))
    return row


@torch.no_grad()
def packed_probe_row(pack: Any, probe: Probe) -> dict[str, torch.Tensor]:
    """sat_frac (and per layer) and logit_lse of every seed of a PackedRecurrentNet ([S] each)."""
    was_training = pack.training
    pack.eval()
    s = pack.seeds
    xs = probe.x.unsqueeze(0).expand(s, *probe.x.shape)
    every = probe.mask.unsqueeze(0).expand(s, -1, -1)
    try:
        out = pack(xs, every if probe.lengths is not None else None)
        row = {"logit_lse": probe.lse(out)} if probe.kind == "classification" else {}
        run = run_layers(pack.cell, pack.layer_directions(), pack.embed_input(xs), every)
    finally:
        pack.train(was_training)
    for k, (sat, n) in enumerate(zip(run.saturated, run.counted)):
        row[f"sat_frac/rnn.l{k}"] = sat / n.clamp_min(1.0)
    row["sat_frac"] = sum(run.saturated) / sum(run.counted).clamp_min(1.0)
    return row


def _saturation_row(
    model: nn.Module, calls: dict[str, tuple], mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """sat_frac/<module>.l<k> per layer of each recurrent module the forward pass used, and
    their pooled sat_frac (no columns when the model has no nn.LSTM / nn.GRU)."""
    row: dict[str, torch.Tensor] = {}
    sat = total = None
    for name, module in recurrent_modules(model):
        if name not in calls:
            continue
        run = module_saturation(module, calls[name], mask)
        for k, (s, n) in enumerate(zip(run.saturated, run.counted)):
            row[f"sat_frac/{name}.l{k}"] = (s / n.clamp_min(1.0))[0]
            sat = s if sat is None else sat + s
            total = n if total is None else total + n
    if sat is not None:
        row["sat_frac"] = (sat / total.clamp_min(1.0))[0]
    return row


def read_row(row: dict[str, torch.Tensor]) -> dict[str, float]:
    """One host read of a row of 0-d device tensors (non-finite values as NaN)."""
    if not row:
        return {}
    values = torch.stack([v.float().reshape(()) for v in row.values()]).tolist()
    return {k: (v if math.isfinite(v) else math.nan) for k, v in zip(row, values)}
