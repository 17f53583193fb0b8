"""`trainer=builtin`: lrsweep's own loop (sweep.training) behind the trainers' interface.

Usage (by the worker)::

    trainer = BuiltinTrainer(cfg, task, device)
    records = trainer.train(setting, seeds, should_stop)   # checkpoints every checkpoint_every epochs
    trainer.clear(setting, seeds)                          # once the trial is stored
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sweep.config import Config
from sweep.core.records import RunRecord
from sweep.tasks import TaskData
from sweep.training import SettingSpec, train_spec
from sweep.training.checkpoints import Checkpointer
from sweep.training.kept import Keeper, NullKeeper
from sweep.training.start_state import load_start


class BuiltinTrainer:
    """Trains the seeds of a setting together (separate or packed), resuming from its checkpoint."""

    def __init__(
        self,
        cfg: Config,
        task: TaskData,
        device: torch.device,
        on_epoch: Callable[[int | None, int], None] | None = None,
    ) -> None:
        self.cfg, self.task, self.device = cfg, task, device
        self.on_epoch = on_epoch or (lambda seed, epoch: None)
        self._start: Any = None  # the saved state every run starts from (read once per worker)

    def _checkpointer(
        self, spec: SettingSpec, setting: dict[str, Any], seeds: list[int]
    ) -> Checkpointer:
        return Checkpointer(
            self.cfg.study_dir / "checkpoints",
            setting,
            seeds,
            spec.fingerprint,
            self.cfg.checkpoint_every,
            self.cfg.checkpoint_minutes,
        )

    def train(
        self, setting: dict[str, Any], seeds: list[int], should_stop: Callable[[], bool]
    ) -> list[RunRecord]:
        spec = SettingSpec.build(self.cfg, setting, seeds)  # once per trial: the extra axes applied
        if self._start is None:
            self._start = load_start(self.cfg)
        keep = self.cfg.checkpoint.keep_epochs
        return train_spec(
            self.task,
            spec,
            self.device,
            self._checkpointer(spec, setting, seeds),
            should_stop=should_stop,
            on_epoch=lambda epoch: self.on_epoch(None, epoch),
            start=self._start,
            keeper=Keeper(self.cfg, setting, self._start.epoch) if keep else NullKeeper(),
        )  # (every seed at once)

    def clear(self, setting: dict[str, Any], seeds: list[int]) -> None:
        self._checkpointer(SettingSpec.build(self.cfg, setting, seeds), setting, seeds).clear()
