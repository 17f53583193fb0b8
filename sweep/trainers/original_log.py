"""The original run's metrics file (`start.log`), read for a sweep from its checkpoint.

Usage (by `sweep.launch.preparation`, before anything is written)::

    original = original_log(cfg)    # None without start.log
    original["curves"]              # val_acc, val_loss, train_loss of epochs 1..N (the grey curve)
    original["row"]                 # epoch N's scores: where every run of the sweep starts
    original["history"]             # the scores of its last epochs up to N (the calls see them)

Read with the log reader of a user's training (`sweep.trainers.logs`: Keras's and Lightning's
CSV files, any CSV with a header, JSON lines), with the trainer's column names when it has them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sweep.core.errors import UserError
from sweep.trainers.logs import read_log

CURVES = ("val_acc", "val_loss", "train_loss")  # what the report draws of the original run
ROW = ("val_acc", "val_loss", "train_loss", "pred_top_frac", "val_loss_sd")
HISTORY = 5  # the original's last epochs the collapse calls see before the sweep's


def original_log(cfg: Any) -> dict[str, Any] | None:
    """The original run's curves up to the checkpoint's epoch and that epoch's scores; a one-line
    UserError when the file cannot be read or ends before that epoch."""
    start = cfg.start
    if not start.active or not start.log:
        return None
    path = Path(start.log).expanduser()
    if not path.is_file():
        raise UserError(
            f"start.log: {path} is not a file; give the original run's metrics file (e.g. the "
            f"CSVLogger file it wrote), or drop start.log"
        )
    columns = getattr(cfg.trainer, "columns", None)
    epochs = read_log(path, columns=columns, final=True).epochs
    n = int(start.epoch or 0)
    if len(epochs) < n or n < 1:
        raise UserError(
            f"start.log: {path} holds {len(epochs)} epochs, but the checkpoint was saved after epoch "
            f"{n} (start.epoch); give the log of the run that saved it"
        )
    kept = epochs[:n]
    curves = {c: [_number(e.get(c)) for e in kept] for c in CURVES if any(c in e for e in kept)}
    rows = [{c: _number(e.get(c)) for c in ROW if c in e} for e in kept[-HISTORY:]]
    return {"curves": curves, "row": rows[-1], "history": rows, "first_epoch": 1, "log": str(path)}


def _number(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
