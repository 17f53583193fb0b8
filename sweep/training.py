"""Training of the repeated seeds of one grid setting.

Usage::

    records = train_setting(task, cfg, setting, seeds=[0, 1, 2], device=torch.device("cpu"))

`train_setting` does no plotting and no storage I/O: it returns one :class:`RunRecord` per seed
(per-epoch curves and the non-finite event, if any). The study layer stores them; the analysis
layer reads them.

What is fixed by the seed alone (so a seed's curves are identical whether it is trained alone,
with other seeds, or resumed from a checkpoint, on the CPU): the initial weights, the order of
the training data (a per-seed generator), and the dropout masks (a per-seed RNG state swapped in
around each of its epochs).

Per step, the loss and the gradient norm before clipping are written into device buffers; they
are read once per epoch (one host synchronisation per epoch), plus one small read per non-finite
check. A seed whose loss, gradients or parameters become non-finite stops: on the CPU the check
runs every step (free there), on CUDA every `NONFINITE_CHECK_STEPS` steps, and each check looks
at every step since the previous one; either way the record (curves and step count) ends at the
first non-finite step, so it does not depend on the check interval.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from sweep.accelerator import SeedRng, describe_device
from sweep.config import Config, apply_overrides
from sweep.metrics import batch_loss, item_correct, item_loss, step_mask
from sweep.models import build_model, l2_penalty
from sweep.optim import build_optimizer, lr_at, set_lr
from sweep.tasks.data import TaskData

# Per-epoch curve columns of a run (the names used in the study, curves.parquet and plots).
EPOCH_COLUMNS = (
    "train_loss",
    "val_loss",
    "val_acc",
    "grad_norm_mean",
    "grad_norm_max",
    "grad_norm_p90",
    "clip_fraction",
    "pred_top_frac",
    "epoch_lr",  # learning rate of the epoch's last step (the schedule's value)
    "val_loss_sd",  # spread (SD) of per-sequence validation losses: val_loss's noise is val_loss_sd / sqrt(n)
)
NONFINITE_CHECK_STEPS = 16  # on CUDA: steps between host-side non-finite checks
EVAL_BATCH = 4096  # validation batch (inference only, no activations kept)


@dataclass
class RunRecord:
    """What one seed of one setting did: per-epoch curves (epochs 1..n) and its end.

    `nonfinite` says what became NaN/inf first ("loss", "gradient" or "parameters") and
    `nonfinite_epoch` in which epoch; the curves stop with that epoch (its validation values are
    NaN: the model was no longer usable).
    """

    seed: int
    curves: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in EPOCH_COLUMNS})
    nonfinite: Optional[str] = None
    nonfinite_epoch: Optional[int] = None
    steps: int = 0
    seconds: float = 0.0
    device: str = ""  # what trained it, e.g. "cpu" or "cuda:0 (NVIDIA H100), fp32 ieee"

    @property
    def epochs_run(self) -> int:
        return len(self.curves["val_acc"])

    def append(self, row: dict[str, float]) -> None:
        for c in EPOCH_COLUMNS:
            self.curves[c].append(float(row[c]))


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def nonfinite_check_steps(device: torch.device) -> int:
    """Steps between non-finite checks: every step on the CPU (a check costs nothing there);
    on CUDA every NONFINITE_CHECK_STEPS steps, since each check waits for the GPU."""
    return 1 if device.type == "cpu" else NONFINITE_CHECK_STEPS


class SeedTrainer:
    """Model, optimizer, data order and RNG state of one seed, trained one epoch at a time."""

    def __init__(self, task: TaskData, cfg: Config, setting: dict[str, Any], seed: int,
                 device: torch.device, check_every: Optional[int] = None) -> None:
        self.task = task
        self.cfg = cfg
        self.seed = seed
        self.device = device
        self.lr = float(setting["lr"])
        self.clip = setting["clip"]
        self.batch_size = int(setting["batch_size"])
        self.model = build_model(cfg.model, task, seed).to(device)
        # Sequence lengths stay on the device: a forward model gathers them there (a host copy
        # per step would wait for the GPU). Only a bidirectional model packs its batch, and
        # pack_padded_sequence reads lengths on the host: it gets a host copy, gathered there.
        self.host_lengths = (
            (task.lengths_train.cpu(), task.lengths_val.cpu())
            if task.lengths_train is not None and getattr(self.model, "directions", 1) == 2 else None
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.weights = [p for p in self.params if p.dim() >= 2]
        self.optimizer = build_optimizer(self.params, cfg.optimizer, self.lr, device)
        self.data_gen = torch.Generator().manual_seed(seed)  # data order: CPU generator
        self.rng = SeedRng(seed, device)  # the seed's own dropout stream, swapped in per epoch
        self.steps_per_epoch = math.ceil(task.n_train / self.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.step = 0
        self.record = RunRecord(seed=seed)
        self.check_every = check_every or nonfinite_check_steps(device)

    @property
    def stopped(self) -> bool:
        return self.record.nonfinite is not None or self.record.epochs_run >= self.cfg.epochs

    # -- one epoch ------------------------------------------------------------------------------

    def run_epoch(self) -> None:
        started = time.perf_counter()
        with self.rng.active():
            row, nonfinite = self._train_epoch()
            if nonfinite is None and not _params_finite(self.params):
                nonfinite = "parameters"
            if nonfinite is None:
                row.update(self._evaluate())
            else:
                row.update(NO_EVALUATION)
        self.record.append(row)
        if nonfinite is not None:
            self.record.nonfinite = nonfinite
            self.record.nonfinite_epoch = self.record.epochs_run
        self.record.steps = self.step
        self.record.seconds += time.perf_counter() - started

    def _lengths(self, split: int, idx: Any, host_idx: Any) -> Optional[torch.Tensor]:
        """Lengths of the sequences `idx` (device index tensor or slice; `host_idx` the same on
        the host) of split 0 (train) or 1 (validation), where the model reads them: on the
        device, or on the host for a model that packs its batch."""
        lengths = (self.task.lengths_train, self.task.lengths_val)[split]
        if lengths is None:
            return None
        if self.host_lengths is not None:
            return self.host_lengths[split][host_idx]
        return lengths[idx]

    def _train_epoch(self) -> tuple[dict[str, float], Optional[str]]:
        task, dev = self.task, self.device
        self.model.train()
        n = task.n_train
        perm_cpu = torch.randperm(n, generator=self.data_gen)
        perm = perm_cpu.to(dev, non_blocking=True)
        losses: list[torch.Tensor] = []  # per-step device scalars, stacked once per epoch
        norms: list[torch.Tensor] = []
        clip = self.clip
        constant_lr = self.cfg.schedule.name == "constant"
        if constant_lr:
            set_lr(self.optimizer, self.lr)
        first_step = self.step
        for s in range(self.steps_per_epoch):
            lo, hi = s * self.batch_size, min(n, (s + 1) * self.batch_size)
            idx = perm[lo:hi]
            xb = task.x_train.index_select(0, idx)
            yb = task.y_train.index_select(0, idx)
            lb = self._lengths(0, idx, perm_cpu[lo:hi])
            if not constant_lr:
                set_lr(self.optimizer, lr_at(self.cfg.schedule, self.step, self.total_steps, self.lr))
            out = self.model(xb, lb)
            mask = step_mask(lb.to(dev) if lb is not None else None, xb.shape[0], xb.shape[1], dev) if task.per_step else None
            loss = batch_loss(task.kind, out, yb, mask)
            objective = loss + self.cfg.optimizer.l2 * l2_penalty(self.weights) if self.cfg.optimizer.l2 else loss
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if clip is None:
                norm = _total_norm(self.params)
            else:
                norm = torch.nn.utils.clip_grad_norm_(self.params, clip, foreach=True)
            self.optimizer.step()
            losses.append(loss.detach())
            norms.append(norm.detach())
            self.step += 1
            if len(losses) % self.check_every == 0 and not _window_finite(losses, norms, self.check_every):
                break
        row, nonfinite, first_bad = _epoch_stats(torch.stack(losses), torch.stack(norms), clip,
                                                 self.optimizer.param_groups[0]["lr"])
        if first_bad is not None:  # the run ends at its first non-finite step, whenever it was noticed
            self.step = first_step + first_bad + 1
        return row, nonfinite

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
        top = counts.max() / counts.sum().clamp_min(1) if counts is not None else torch.tensor(math.nan, device=dev)
        sd = sequence_sd(seq_sum, seq_sq, n)
        vals = torch.stack([loss_sum / items, correct / items, top.to(loss_sum.dtype), sd]).tolist()
        val_loss, val_acc, top_frac, loss_sd = vals
        if not math.isfinite(val_loss):  # finite parameters can still overflow the output
            val_acc, top_frac, loss_sd = math.nan, math.nan, math.nan
        return {"val_loss": val_loss, "val_acc": val_acc, "pred_top_frac": top_frac, "val_loss_sd": loss_sd}

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


def _total_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of the gradients (what clip_grad_norm_ measures), without clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch._foreach_norm(grads) if hasattr(torch, "_foreach_norm") else [g.norm() for g in grads]
    return torch.linalg.vector_norm(torch.stack(norms))


def _params_finite(params: list[torch.Tensor]) -> bool:
    return bool(torch.stack([p.detach().isfinite().all() for p in params]).all())


NO_EVALUATION = {"val_loss": math.nan, "val_acc": math.nan, "pred_top_frac": math.nan, "val_loss_sd": math.nan}


def sequence_sd(total: torch.Tensor, squares: torch.Tensor, n: int) -> torch.Tensor:
    """Sample SD of n per-sequence values from their sum and sum of squares (device tensors;
    any leading shape, e.g. one per packed seed)."""
    mean = total / n
    var = (squares / n - mean * mean).clamp_min(0) * (n / max(n - 1, 1))
    return var.sqrt()


def _window_finite(losses: list[torch.Tensor], norms: list[torch.Tensor], window: int) -> bool:
    """Were the last `window` steps finite (one host read)? The whole window since the previous
    check, not only its last step: an inf gradient norm makes clipping multiply the gradients by
    0, so the steps after a non-finite one can look finite again."""
    if window == 1:
        return bool(torch.isfinite(losses[-1] + norms[-1]))
    return bool(torch.isfinite(torch.stack(losses[-window:]) + torch.stack(norms[-window:])).all())


def _epoch_stats(losses: torch.Tensor, norms: torch.Tensor, clip: Optional[float],
                 lr: float) -> tuple[dict[str, float], Optional[str], Optional[int]]:
    """Per-epoch summary of the step buffers, cut at the first non-finite step (one host sync).

    Returns the row, what went non-finite first ("loss" or "gradient", None when nothing did)
    and the index of that step within the epoch.
    """
    finite = torch.isfinite(losses) & torch.isfinite(norms)
    bad = (~finite).nonzero()
    first_bad = int(bad[0, 0]) if bad.numel() else None
    nonfinite = None
    if first_bad is not None:
        losses, norms = losses[: first_bad + 1], norms[: first_bad + 1]
        nonfinite = "loss" if not bool(torch.isfinite(losses[-1])) else "gradient"
    clipped = (norms >= clip).float().mean() if clip is not None else torch.zeros((), device=norms.device)
    stats = torch.stack([
        losses.mean(), norms.mean(), norms.max(), torch.quantile(norms.float(), 0.9), clipped,
    ]).tolist()
    row = dict(zip(("train_loss", "grad_norm_mean", "grad_norm_max", "grad_norm_p90", "clip_fraction"), stats))
    row = {k: (v if math.isfinite(v) else math.nan) for k, v in row.items()}
    row["epoch_lr"] = lr
    return row, nonfinite, first_bad


class StopRequested(Exception):
    """Raised after an epoch (and a checkpoint) when the worker was asked to stop."""


class NullCheckpointer:
    """Checkpointing switched off: nothing is saved or restored."""

    def load(self) -> Optional[dict[str, Any]]:
        return None

    def maybe_save(self, epoch: int, state: Callable[[], dict[str, Any]], force: bool = False) -> None:
        pass

    def clear(self) -> None:
        pass


class SeedGroup:
    """The seeds of a setting trained as separate models (`packing=off`), epoch by epoch."""

    mode = "separate"

    def __init__(self, task: TaskData, cfg: Config, setting: dict[str, Any], seeds: list[int],
                 device: torch.device, check_every: Optional[int] = None) -> None:
        self.trainers = [SeedTrainer(task, cfg, setting, s, device, check_every) for s in seeds]

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


def use_packing(cfg: Config, device: torch.device) -> bool:
    """`packing=auto`: pack the seeds where it is faster, by a fixed rule (the choice changes
    float rounding, so it must not depend on timing noise):

    - CUDA: yes. One small model cannot keep a GPU busy (it waits on kernel launches); the pack
      does the work of all seeds per launch.
    - CPU: no. PyTorch's nn.LSTM/nn.GRU run their time loop in C++, while the pack's loop is
      Python; measured on 2 cores (benchmarks/README.md) the pack reached 0.3x-1.1x of separate
      models, so separate models are the default there.
    - Never with dropout: packed dropout masks are drawn for the whole pack, so a seed's curves
      would depend on which seeds share its pack (`packing=on` still allows it).
    """
    if cfg.packing != "auto":
        return cfg.packing == "on"
    if cfg.model.dropout > 0 and cfg.model.layers > 1:
        return False
    return device.type == "cuda"


def train_setting(
    task: TaskData,
    cfg: Config,
    setting: dict[str, Any],
    seeds: list[int],
    device: torch.device,
    checkpointer: Any = None,
    should_stop: Callable[[], bool] = lambda: False,
    check_every: Optional[int] = None,
) -> list[RunRecord]:
    """Train every seed of one setting for `cfg.epochs` epochs; return one record per seed.

    Seeds advance together, epoch by epoch, so that a checkpoint holds all of them at the same
    epoch; with packing they are one model. `setting` holds lr, clip, batch_size and any extra
    grid axes (dotted config keys). After every epoch `should_stop()` is asked; when it says
    yes, a checkpoint is written and :class:`StopRequested` is raised. `check_every` overrides
    the steps between non-finite checks (default: per device, see `nonfinite_check_steps`).
    """
    # Denormal floats make saturated high-LR runs several times slower on CPUs and carry no
    # information for training; flush them to zero while training (set here so every entry
    # point agrees, and reset after: it is process-wide CPU state).
    torch.set_flush_denormal(True)
    try:
        return _train_setting(task, cfg, setting, seeds, device, checkpointer, should_stop, check_every)
    finally:
        torch.set_flush_denormal(False)


def _train_setting(task, cfg, setting, seeds, device, checkpointer, should_stop, check_every) -> list[RunRecord]:
    from sweep.packed import PackedTrainer

    checkpointer = checkpointer or NullCheckpointer()
    extra = {k: v for k, v in setting.items() if k not in ("lr", "clip", "batch_size")}
    run_cfg = apply_overrides(cfg, extra)
    saved = checkpointer.load()
    # A resumed setting continues in the mode it started in, also on another device (a setting
    # begun packed on a GPU host resumes packed on a CPU host): switching would change rounding.
    packed = saved["mode"] == PackedTrainer.mode if saved is not None else use_packing(run_cfg, device)
    group_type = PackedTrainer if packed else SeedGroup
    group = group_type(task, run_cfg, setting, list(seeds), device, check_every)
    if saved is not None:
        group.load_state_dict(saved["group"])
    epoch = min((r.epochs_run for r in group.records_list() if r.nonfinite is None), default=cfg.epochs)
    while not group.stopped:
        epoch += 1
        group.run_epoch()
        stop = should_stop() and not group.stopped
        if not group.stopped:
            checkpointer.maybe_save(epoch, lambda: {"mode": group.mode, "group": group.state_dict()}, force=stop)
        if stop:
            raise StopRequested(f"stopped after epoch {epoch}")
    records = group.records_list()
    for record in records:
        record.device = describe_device(device)
    return records
