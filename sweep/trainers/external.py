"""What the command and the function trainers share: the seeds of a trial run one after another,
each finished run is kept on disk until the trial is stored, and a run's per-epoch log becomes a
`RunRecord`.

Usage (by `CommandTrainer` and `FunctionTrainer`)::

    class MyTrainer(ExternalTrainer):
        def run_one(self, setting, seed, paths, should_stop): ...   # -> RunRecord
    records = trainer.train(setting, seeds, should_stop)

A run that exits non-zero (or raises) is `crashed`, one stopped at `trainer.timeout_minutes` is
`timed_out`: outcomes of their own, never collapses. A non-finite logged loss is a `nonfinite`
collapse at its epoch; the run is stopped there (no compute wasted), as lrsweep's own loop does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.config import Config
from sweep.config.trainers import FROM_LOG
from sweep.core.errors import UserError
from sweep.core.records import RunRecord
from sweep.trainers.runs import RunPaths

Progress = Callable[[int, int], None]  # (seed, epochs logged so far)
LOSSES = ("train_loss", "val_loss")  # a non-finite value of one of these is a non-finite collapse


@dataclass
class Ending:
    """How a run ended, as its trainer saw it."""

    failure: str | None = None  # None (it finished), "crashed" or "timed_out"
    reason: str = ""
    stopped_nonfinite: bool = False  # lrsweep stopped it at a non-finite logged loss


def first_nonfinite(epochs: list[dict[str, float]]) -> int | None:
    """The first epoch (1-based) whose logged train or validation loss is NaN or infinite."""
    for i, row in enumerate(epochs, start=1):
        if any(k in row and not math.isfinite(row[k]) for k in LOSSES):
            return i
    return None


class ExternalTrainer:
    """The seed loop of a user's training; subclasses run one (setting, seed)."""

    def __init__(self, cfg: Config, device: str, progress: Progress | None = None) -> None:
        self.cfg = cfg
        self.options = cfg.trainer
        self.device = device
        self.progress = progress or (lambda seed, epoch: None)

    @property
    def timeout_seconds(self) -> float:
        return 60.0 * self.options.timeout_minutes if self.options.timeout_minutes > 0 else math.inf

    def paths(self, setting: dict[str, Any], seed: int) -> RunPaths:
        return RunPaths.of(self.cfg.study_dir, setting, seed)

    def train(
        self, setting: dict[str, Any], seeds: list[int], should_stop: Callable[[], bool]
    ) -> list[RunRecord]:
        """Every seed of the setting, in order; finished ones come from disk (a retried trial)."""
        records = []
        for seed in seeds:
            paths = self.paths(setting, seed)
            done = paths.load_done()
            if done is None:
                done = self.run_one(setting, int(seed), paths, should_stop)
                paths.save_done(done)
            records.append(done)
        return records

    def clear(self, setting: dict[str, Any], seeds: list[int]) -> None:
        """The trial is stored: drop its checkpoint folders and kept records."""
        for seed in seeds:
            self.paths(setting, seed).clear()

    def run_one(
        self, setting: dict[str, Any], seed: int, paths: RunPaths, should_stop: Callable[[], bool]
    ) -> RunRecord:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ a log -> a record

    def record(
        self, seed: int, log: Any, ending: Ending, paths: RunPaths, seconds: float, device: str
    ) -> RunRecord:
        """The RunRecord of a finished (or failed) run from its parsed log (None: nothing logged)."""
        epochs = list(log.epochs)[: self.cfg.epochs] if log is not None else []
        record = RunRecord(seed=seed)
        bad = first_nonfinite(epochs)
        if bad is not None:
            epochs = epochs[:bad]
            record.nonfinite, record.nonfinite_epoch = "loss", bad
        for row in epochs:
            record.append(row)
        record.seconds = seconds
        record.device = device
        record.log_path = str(paths.run_dir)
        if ending.failure and bad is None:  # a crash after a NaN is the NaN's collapse, not a crash
            record.failure, record.failure_reason = ending.failure, ending.reason[-2000:]
        record.n_val, record.chance = self.validation_facts(log, paths)
        return record

    def validation_facts(self, log: Any, paths: RunPaths) -> tuple[int | None, float | None]:
        """(n_val, chance) as the config or the run's own log states them; `log` mode needs them
        in the log (a one-line error naming the file otherwise)."""
        facts = []
        for name in ("n_val", "chance"):
            configured = getattr(self.options, name)
            if configured != FROM_LOG:
                facts.append(configured)
                continue
            value = getattr(log, name, None) if log is not None else None
            if value is None and log is not None and log.epochs:
                raise UserError(
                    f"trainer.{name}=log, but the metrics in {paths.run_dir} have no {name} column; log "
                    f"{name} with every epoch, or set trainer.{name}=VALUE"
                )
            facts.append(value)
        n_val, chance = facts
        return (int(n_val) if n_val is not None else None), (
            float(chance) if chance is not None else None
        )


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


def tail(path: Path, lines: int = 20, limit: int = 2000) -> str:
    """The last lines of a text file (a run's stderr), at most `limit` characters, one line."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-limit:]
