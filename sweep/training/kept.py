"""States lrsweep keeps on request (`checkpoint.keep_epochs`), so that a later sweep can start
from one of them (`start.from_run=<setting>/seed-N@EPOCH`).

Usage (by the built-in trainer)::

    keeper = Keeper(cfg, setting, offset=start_epoch)   # NullKeeper() when nothing is kept
    keeper.after_epoch(group, epoch)                     # after each epoch of the seeds

Each kept state is two files under results/<study>/kept/<setting>/: `seed-N@EPOCH.pt` (the seed's
network `state_dict` and its optimizer's `state_dict`, as one network's even when the seeds trained
packed; read with `torch.load(..., weights_only=True)`) and `seed-N@EPOCH.json` (what it is: the
study, setting, seed, epoch, and the run's curves up to that epoch, drawn in grey before a sweep
that starts from it). Both are written atomically; kept states stay after the sweep.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import torch

from sweep.config.start import kept_name, kept_paths
from sweep.config.targets import TargetModel
from sweep.core.files import atomic_write, write_text
from sweep.training.start_state import KEPT_FORMAT
from sweep.training.state_slots import seed_state

CURVES = ("val_acc", "val_loss", "train_loss")  # what the report draws of the original run


class NullKeeper:
    """Nothing kept."""

    def after_epoch(self, group: Any, epoch: int) -> None:
        pass


class Keeper:
    """Keeps every seed's state after the epochs `cfg.checkpoint.keep_epochs` names (counted on
    from `offset`, the epoch the sweep started from)."""

    def __init__(self, cfg: Any, setting: dict[str, Any], offset: int = 0) -> None:
        self.study_dir, self.study = cfg.study_dir, cfg.study.name
        self.setting = dict(setting)
        self.epochs = set(cfg.checkpoint.keep_epochs)
        self.offset = offset
        model = cfg.model
        self.model = (
            {"_target_": model.target}
            if isinstance(model, TargetModel)
            else dataclasses.asdict(model)
        )
        self.optimizer = cfg.optimizer.name

    def after_epoch(self, group: Any, epoch: int) -> None:
        at = self.offset + epoch
        if at not in self.epochs:
            return
        for record in group.records_list():
            if record.nonfinite is not None or record.epochs_run != epoch:
                continue  # a run that blew up (or stopped before) has no state worth keeping
            weights, optimizer = _state_of(group, record.seed)
            self._write(record, at, weights, optimizer)

    def _write(
        self, record: Any, at: int, weights: dict[str, Any], optimizer: list[dict[str, Any]]
    ) -> None:
        state_path, facts_path = kept_paths(self.study_dir, self.setting, record.seed, at)
        payload = {
            "format": KEPT_FORMAT,
            "study": self.study,
            "setting": self.setting,
            "seed": int(record.seed),
            "epoch": at,
            "model": weights,
            "optimizer": {
                "state": {i: entry for i, entry in enumerate(optimizer) if entry},
                "param_groups": [{"params": list(range(len(optimizer)))}],
            },
        }
        atomic_write(state_path, lambda p: torch.save(payload, p))
        facts = {
            "study": self.study,
            "setting": self.setting,
            "seed": int(record.seed),
            "epoch": at,
            "first_epoch": self.offset + 1,
            "from_run": kept_name(self.setting, record.seed, at, self.study),
            "model": self.model,
            "optimizer": self.optimizer,
            "curves": {
                c: [_json_number(v) for v in record.curves[c]] for c in CURVES if c in record.curves
            },
        }
        write_text(facts_path, json.dumps(facts, indent=1))


def _state_of(group: Any, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A seed's weights and per-parameter optimizer state (its network's order), on the CPU."""
    if not hasattr(group, "trainers"):  # packed
        return seed_state(group, seed)
    t = next(t for t in group.trainers if t.seed == seed)
    weights = {k: v.detach().clone().cpu() for k, v in t.model.state_dict().items()}
    params = [p for p in t.model.parameters() if p.requires_grad]
    optimizer = [
        {
            k: v.detach().clone().cpu() if torch.is_tensor(v) else v
            for k, v in t.optimizer.state.get(p, {}).items()
        }
        for p in params
    ]
    return weights, optimizer


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
