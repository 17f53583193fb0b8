"""What a study records of the saved state its runs start from (study attribute `lrsweep.start`).

Usage (by `sweep.launch.preparation`, after every check passed)::

    study.set_user_attr(ATTR_START, start_facts(cfg, task))

The facts: the checkpoint (its path, sha256, the epoch it was saved after), whether the optimizer
state was restored, the original setting, the original run's curve up to that epoch (a state
lrsweep kept knows it), and, for lrsweep's own loop, the start's scores: the checkpoint evaluated
once on the validation set (and its loss on the training set). The analysis reads the scores as
the epoch before the sweep's first (a run that loses what the checkpoint knew in its first epoch
collapsed; it did not "never learn"), and the report draws the original curve in grey.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from sweep.config.start import find_kept, start_file
from sweep.training.separate import SeedTrainer
from sweep.training.spec import SettingSpec
from sweep.training.start_state import load_start, read_checkpoint

HISTORY = 5  # the original's last epochs (the checkpoint's included) the collapse calls see


def start_facts(
    cfg: Any, task: Any = None, original: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The facts of `cfg`'s start (`task`: lrsweep's own data, to score the checkpoint on; None
    for a user's training). `original`: the original run's log as `sweep.trainers.original_log`
    reads it (start.log): its curve, and its last epoch's scores where lrsweep cannot measure them."""
    start = cfg.start
    path = start_file(cfg)
    facts: dict[str, Any] = {
        "checkpoint": str(path),
        "from_run": start.from_run,
        "sha256": start.sha256,
        "epoch": int(start.epoch or 0),
        "optimizer": start.optimizer,
        "setting": dict(start.setting or {}),
        "trainer": cfg.trainer.name if not cfg.trainer.builtin else "builtin",
    }
    if start.from_run:
        facts["original"] = _original(find_kept(cfg.results_dir, start.from_run)[1])
    elif original is not None:
        facts["original"] = {k: v for k, v in original.items() if k not in ("row", "history")}
        facts["row"], facts["history"] = original["row"], original["history"]
    if task is not None:
        facts["optimizer_state"] = read_checkpoint(path).optimizer is not None
        facts["row"] = start_row(cfg, task)
        facts["history"] = _history(facts.get("original"), facts["row"], int(start.epoch or 0))
    return facts


def _history(
    original: dict[str, Any] | None, row: dict[str, Any], epoch: int
) -> list[dict[str, Any]]:
    """The rows the collapse calls see before the sweep's epochs: the original run's last epochs
    before N where its curve is known, then the checkpoint's own scores (epoch N)."""
    if not original or not original.get("curves"):
        return [row]
    curves, first = original["curves"], int(original.get("first_epoch", 1))
    known = len(next(iter(curves.values())))
    before = [i for i in range(known) if first + i < epoch][-(HISTORY - 1) :]
    return [{c: v[i] for c, v in curves.items() if i < len(v)} for i in before] + [row]


def _original(kept: dict[str, Any]) -> dict[str, Any]:
    return {
        "study": kept.get("study"),
        "seed": kept.get("seed"),
        "first_epoch": int(kept.get("first_epoch", 1)),
        "curves": kept.get("curves", {}),
    }


def start_row(cfg: Any, task: Any) -> dict[str, float | None]:
    """The checkpoint's scores, as an epoch row: val_loss, val_acc, pred_top_frac, val_loss_sd on
    the validation set, train_loss on the training set (evaluation mode, so the same for every
    seed)."""
    spec = SettingSpec.build(cfg, cfg.grid.settings()[0], [0])
    start = load_start(cfg)
    cpu = torch.device("cpu")
    val = SeedTrainer(task, spec, 0, cpu)
    start.apply_to(val.model, val.optimizer)
    row = val._evaluate()
    train_task = dataclasses.replace(
        task, x_val=task.x_train, y_val=task.y_train, lengths_val=task.lengths_train
    )
    train = SeedTrainer(train_task, spec, 0, cpu)
    start.apply_to(train.model, train.optimizer)
    row["train_loss"] = train._evaluate()["val_loss"]
    return {k: (float(v) if math.isfinite(v) else None) for k, v in row.items()}
