"""The record of one run (one seed of one setting) and its compact stored form.

Usage::

    record = RunRecord(seed=3)              # filled epoch by epoch by the trainers
    data = encode_record(record)            # a JSON-able dict: what a trial's user attribute holds
    decoded = decode_record(data)           # curves as float64 arrays, for analysis

Torch-free: the analysis and the report read records without importing the training code.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    "train_loss_sd",  # spread (SD) of the per-step training losses within the epoch
)
# The signals of why a run collapsed (issue 26, docs/why-it-collapsed.md): per-epoch columns that
# every trainer may record (absent or NaN where it did not), and their per-group variants.
SIGNAL_COLUMNS = ("update_ratio", "sat_frac", "crit_lr", "logit_lse")
SIGNAL_GROUP_PREFIXES = ("update_ratio/", "sat_frac/")
RUN_PREFIX = "run_"  # trial user attribute of a seed's record: run_<seed>


@dataclass
class RunRecord:
    """What one seed of one setting did: per-epoch curves (epochs 1..n) and its end.

    `nonfinite` says what became NaN/inf first ("loss", "gradient" or "parameters") and
    `nonfinite_epoch` in which epoch; the curves stop with that epoch (its validation values are
    NaN: the model was no longer usable).
    """

    seed: int
    curves: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in EPOCH_COLUMNS})
    nonfinite: str | None = None
    nonfinite_epoch: int | None = None
    # The parameter group or module where the NaN/inf appeared first (lrsweep's loop: the failing
    # step replayed with hooks, sweep.training.origin); None when not known.
    nonfinite_origin: str | None = None
    steps: int = 0
    seconds: float = 0.0
    device: str = ""  # what trained it, e.g. "cpu" or "cuda:0 (NVIDIA H100), fp32 ieee"
    # A user's training that did not finish: "crashed" (its script exited non-zero, its function
    # raised) or "timed_out", with why (the last lines of its stderr, the exception). Its curves
    # hold what it logged before; it is neither a collapse nor a stable run.
    failure: str | None = None
    failure_reason: str = ""
    log_path: str = ""  # where its output is kept (a user's training)
    n_val: int | None = None  # validation items and chance as the run's own metrics stated them
    chance: float | None = None
    chance_loss: float | None = None  # the loss of knowing nothing, as config or metrics state it

    @property
    def epochs_run(self) -> int:
        return len(self.curves["val_acc"])

    def append(self, row: dict[str, float]) -> None:
        """Add one epoch. Columns beyond EPOCH_COLUMNS (the per-group gradient norms,
        grad_norm_mean/<group>) are added on their first epoch (earlier epochs: NaN)."""
        for c in row:
            if c not in self.curves:
                self.curves[c] = [float("nan")] * self.epochs_run
        for c in self.curves:
            self.curves[c].append(float(row.get(c, float("nan"))))


def encode_floats(values: Sequence[float]) -> str:
    """float32 little-endian, base64: exact for float32, NaN/inf kept, ~5.3 characters a value."""
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def decode_floats(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


FAILURES = ("crashed", "timed_out")
# stored only when set
_OPTIONAL = (
    "failure",
    "failure_reason",
    "log_path",
    "n_val",
    "chance",
    "chance_loss",
    "nonfinite_origin",
)


def encode_record(record: Any) -> dict[str, Any]:
    out = {
        "seed": record.seed,
        "nonfinite": record.nonfinite,
        "nonfinite_epoch": record.nonfinite_epoch,
        "steps": record.steps,
        "seconds": round(record.seconds, 3),
        "device": getattr(record, "device", ""),
        "curves": {k: encode_floats(v) for k, v in record.curves.items()},
    }
    for key in _OPTIONAL:
        value = getattr(record, key, None)
        if value not in (None, ""):
            out[key] = value
    return out


def record_from_stored(data: dict[str, Any]) -> RunRecord:
    """A RunRecord from its stored form (curves back as float lists): a finished run kept on disk
    while the rest of its trial trains."""
    record = RunRecord(seed=int(data["seed"]))
    record.curves = {k: decode_floats(v).tolist() for k, v in data["curves"].items()}
    for key in ("nonfinite", "nonfinite_epoch", "steps", "seconds", "device", *_OPTIONAL):
        if key in data:
            setattr(record, key, data[key])
    return record


def decode_record(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out["curves"] = {k: decode_floats(v) for k, v in data["curves"].items()}
    return out
