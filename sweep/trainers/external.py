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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.config import Config
from sweep.config.start import start_file
from sweep.config.trainers import FROM_LOG
from sweep.core.errors import UserError
from sweep.core.records import RunRecord
from sweep.trainers.runs import RunPaths

OnEpoch = Callable[[int, int], None]  # told (seed, epochs logged so far) after each epoch
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

    def __init__(self, cfg: Config, device: str, on_epoch: OnEpoch | None = None) -> None:
        self.cfg = cfg
        self.options = cfg.trainer
        self.device = device
        self.on_epoch = on_epoch or (lambda seed, epoch: None)

    @property
    def log_metric(self) -> str:
        """What the log must hold for the calls: "acc" (trainer.metric=acc or detect.metric=acc),
        "loss" (asked for, or no n_val and chance to judge an accuracy by), else "auto"."""
        metric = self.options.metric
        if metric == "auto":
            metric = getattr(self.cfg.detect, "metric", "auto")
        if metric == "auto" and (self.options.n_val is None or self.options.chance is None):
            return "loss"
        return metric

    @property
    def start_epoch(self) -> int:
        """The epoch the checkpoint every run starts from was saved after (0 from scratch)."""
        return int(self.cfg.start.epoch or 0) if self.cfg.start.active else 0

    @property
    def init_checkpoint(self) -> str | None:
        """The checkpoint every run starts from (`start.checkpoint`; None from scratch)."""
        return str(start_file(self.cfg)) if self.cfg.start.active else None

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
            record.failure, record.failure_reason = ending.failure, ending.reason[:2000]
        record.n_val, record.chance = self.validation_facts(log, paths)
        record.chance_loss = self.chance_loss(log)
        if log is not None and getattr(log, "nonfinite_origin", None):
            record.nonfinite_origin = log.nonfinite_origin  # where the log says a NaN began
        return record

    def chance_loss(self, log: Any) -> float | None:
        """The loss of knowing nothing as the config or the run's log states it (None: the loss
        calls take the run's first logged loss)."""
        configured = getattr(self.options, "chance_loss", None)
        if configured is not None and configured != FROM_LOG:
            return float(configured)
        value = getattr(log, "chance_loss", None) if log is not None else None
        return float(value) if value is not None else None

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


HEADER = "== lrsweep "  # how the command trainer marks the start of an attempt in a run's logs


def header_line(stamp: str, command: str) -> str:
    """The line the command trainer writes to a run's stdout.log and stderr.log before each attempt."""
    return f"{HEADER}{stamp}: {command}\n"


def last_lines(path: Path, lines: int = 8) -> list[str]:
    """The last non-blank lines the script itself wrote to a run's log file (stderr.log,
    stdout.log) in its latest attempt: lrsweep's header line and earlier attempts are left out."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    kept = [line.rstrip() for line in text.splitlines()]
    headers = [i for i, line in enumerate(kept) if line.startswith(HEADER)]
    if headers:
        kept = kept[headers[-1] + 1 :]
    return [line for line in kept if line.strip()][-lines:]


def output_reason(what: str, run_dir: Path, limit: int = 2000) -> str:
    """Why a run failed, in one line: `what` (e.g. "exit status 1"), then the last line the script
    wrote (to stderr.log, else stdout.log: a Python error's own line), then the lines before it.

        exit status 1: RuntimeError: CUDA out of memory (stderr.log ends: Traceback ... | RuntimeError: ...)
    """
    for name in ("stderr.log", "stdout.log"):
        lines = last_lines(run_dir / name)
        if lines:
            break
    else:
        return what
    reason = f"{what}: {lines[-1].strip()}"
    if len(lines) > 1:
        reason += f" ({name} ends: {' | '.join(line.strip() for line in lines)})"
    return reason[:limit]
