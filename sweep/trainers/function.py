"""A user's training function (`trainer._target_: mytrain.fit`), called once per (setting, seed)
in the worker process.

The function's contract (the smallest that works, as Ray Tune's function API)::

    def fit(setting, seed, epochs, report, checkpoint_dir, **kwargs):
        # setting: {"lr": 0.1, "clip": None, "batch_size": 32, ...extra grid axes}
        for epoch in range(1, epochs + 1):
            ...train one epoch...
            report(epoch, val_acc=acc, val_loss=vloss, train_loss=loss)   # lrsweep's names

It may leave out the parameters it does not use (of setting, seed, epochs, report,
checkpoint_dir, run_dir, device, init_checkpoint, start_epoch); the trainer node's other keys
are its keyword arguments. From a checkpoint (`start.checkpoint=PATH start.epoch=N`) every run
gets `init_checkpoint` (the path: load it before training) and `start_epoch` (N), trains
`epochs` more epochs and may report them as N+1, N+2, ... (or 1, 2, ...).
`report` accepts the names a metrics file may use (val_accuracy, loss, ...; see
sweep.trainers.logs), epochs counted from 0 or 1, and raises `RunStopped` (do not catch it)
when the run must end: its loss went non-finite (a `nonfinite` collapse: no compute wasted),
it ran past `trainer.timeout_minutes` (checked at each report), or the worker was asked to stop.
Python's, NumPy's and torch's random generators are seeded with the seed before the call. An
exception is a crashed run (its traceback is kept), never a collapse.

`checkpoint_dir` is kept until the trial is stored. A run started again after a kill (the same
command) finds it as its last attempt left it: a function that resumes from it reports on from
its next epoch, and those reports join the earlier attempt's (one that goes back to an earlier
epoch drops what was logged after it, as for a metrics file). With an empty folder the run
starts afresh.
"""

from __future__ import annotations

import inspect
import json
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweep.core.errors import StopRequested, UserError
from sweep.core.records import RunRecord
from sweep.trainers.external import Ending, ExternalTrainer, first_nonfinite
from sweep.trainers.logs import LogError, parse_log
from sweep.trainers.runs import RunPaths

# What lrsweep passes, by name, to a training function that declares it.
ARGUMENTS = (
    "setting",
    "seed",
    "epochs",
    "report",
    "checkpoint_dir",
    "run_dir",
    "device",
    "init_checkpoint",  # start.checkpoint: the saved state every run starts from (None: scratch)
    "start_epoch",  # the epoch it was saved after: report epochs on from start_epoch + 1
)
REQUIRED = ("setting", "report")  # a function without these cannot be told what to train or report
LOG_NAME = "metrics.jsonl"  # what the reports of a run are kept as, in its run folder


class RunStopped(BaseException):
    """Raised by `report` to end a run (a BaseException, so that `except Exception` in a training
    loop does not swallow it)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def call_arguments(fn: Callable[..., Any], kwargs: dict[str, Any]) -> list[str]:
    """The lrsweep arguments `fn` takes (all of them when it has **kwargs); raises TypeError
    naming what is wrong with its signature."""
    params = inspect.signature(fn).parameters
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [n for n in REQUIRED if n not in named and not var_kw]
    if missing:
        raise TypeError(f"it takes no {', '.join(missing)} parameter")
    unknown_kw = [k for k in kwargs if k not in named and not var_kw]
    if unknown_kw:
        raise TypeError(f"the config passes {', '.join(unknown_kw)}, which it does not take")
    clash = [k for k in kwargs if k in ARGUMENTS]
    if clash:
        raise TypeError(f"{', '.join(clash)} is lrsweep's own argument; rename that config key")
    supplied = set(ARGUMENTS) | set(kwargs)
    required = [
        n
        for n, p in params.items()
        if p.default is p.empty
        and n not in supplied
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if required:
        raise TypeError(
            f"its parameter {', '.join(required)} has no default and lrsweep does not pass it"
        )
    if any(p.kind == p.POSITIONAL_ONLY for p in params.values()):
        raise TypeError("it has positional-only parameters; lrsweep passes every argument by name")
    return [n for n in ARGUMENTS if var_kw or n in named]


def check_start_argument(cfg: Any, names: list[str], what: str) -> None:
    """From a checkpoint, the function must take `init_checkpoint` (or every run would train from
    scratch): a one-line UserError otherwise."""
    if cfg.start.active and "init_checkpoint" not in names:
        raise UserError(
            f"trainer._target_: start.checkpoint is set, but {what} takes no init_checkpoint "
            f"parameter, so every run would train from scratch; add init_checkpoint=None (and "
            f"start_epoch=0) to its parameters and load the state it names before training"
        )


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and (when imported) torch's generators, as a training script would."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


class FunctionTrainer(ExternalTrainer):
    """Calls the training function per (setting, seed) with a `report` callback."""

    def __init__(self, cfg: Any, device: str, fn: Callable[..., Any], on_epoch: Any = None) -> None:
        super().__init__(cfg, device, on_epoch)
        self.fn = fn
        self.names = call_arguments(fn, dict(self.options.kwargs))
        check_start_argument(cfg, self.names, getattr(fn, "__qualname__", "the function"))

    def run_one(
        self, setting: dict[str, Any], seed: int, paths: RunPaths, should_stop: Callable[[], bool]
    ) -> RunRecord:
        resumable = paths.prepare()
        log_file = paths.run_dir / LOG_NAME
        lines = earlier_reports(log_file) if resumable else []
        log_file.write_text("".join(lines), encoding="utf-8")
        start = time.monotonic()
        state: dict[str, Any] = {"log": None, "error": None}

        def report(epoch: int, **metrics: Any) -> None:
            try:
                line = (
                    json.dumps({"epoch": int(epoch), **{k: _number(v) for k, v in metrics.items()}})
                    + "\n"
                )
            except (TypeError, ValueError) as e:
                state["error"] = UserError(
                    f"trainer._target_: report(epoch, **metrics) needs a whole epoch and numbers, "
                    f"got epoch={epoch!r} and {metrics!r} ({e})"
                )
                raise RunStopped("error") from None
            lines.append(line)
            with open(log_file, "a", encoding="utf-8") as f:
                f.write(line)
            try:
                state["log"] = parse_log(
                    "".join(lines),
                    path=str(log_file),
                    columns=self.options.columns,
                    metric=self.log_metric,
                    final=False,
                    start_epoch=self.start_epoch,
                )
            except (
                LogError
            ) as e:  # the reports break a rule of the log: the user's error, not a crash
                state["error"] = e
                raise RunStopped("error") from None
            self.on_epoch(seed, len(state["log"].epochs))
            if first_nonfinite(state["log"].epochs) is not None:
                raise RunStopped("nonfinite")
            if time.monotonic() - start > self.timeout_seconds:
                raise RunStopped("timed_out")
            if should_stop():
                raise RunStopped("stop")

        values = {
            "setting": dict(setting),
            "seed": seed,
            "epochs": self.cfg.epochs,
            "report": report,
            "checkpoint_dir": str(paths.checkpoint_dir),
            "run_dir": str(paths.run_dir),
            "device": self.device,
            "init_checkpoint": self.init_checkpoint,
            "start_epoch": self.start_epoch,
        }
        ending = Ending()
        seed_everything(seed)
        try:
            self.fn(**{n: values[n] for n in self.names}, **self.options.kwargs)
        except RunStopped as stopped:
            if state["error"] is not None:
                raise state["error"] from None
            if stopped.why == "stop":
                raise StopRequested("stopped while a training function ran") from None
            if stopped.why == "timed_out":
                minutes = self.options.timeout_minutes
                ending = Ending(
                    "timed_out", f"still running after trainer.timeout_minutes={minutes:g}"
                )
            else:
                ending = Ending(stopped_nonfinite=True)
        except Exception as e:  # the user's code failed: a crashed run, with where it failed
            frames = traceback.format_exception(type(e), e, e.__traceback__)
            where = [line.strip() for line in "".join(frames[-4:]).splitlines() if line.strip()]
            error = " ".join(f"{type(e).__name__}: {e}".split())
            ending = Ending("crashed", f"raised {error} (traceback ends: {' | '.join(where)})")
        clean = ending.failure is None and not ending.stopped_nonfinite
        text = "".join(lines)
        log = (
            parse_log(
                text,
                path=str(log_file),
                columns=self.options.columns,
                metric=self.log_metric,
                final=True,
                start_epoch=self.start_epoch,
            )
            if clean
            else state["log"]
        )
        return self.record(
            seed, log, ending, paths, time.monotonic() - start, f"function on {self.device}"
        )


def earlier_reports(log_file: Path) -> list[str]:
    """The whole lines an earlier attempt of this run reported (a function resuming from its
    checkpoint folder reports on from there: its log is the earlier epochs and the new ones); a
    last line cut by a kill mid-write is left out."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return [line + "\n" for line in text.split("\n")[:-1]]


def _number(value: Any) -> float:
    """A reported metric as a float (a Python number, a NumPy scalar or a 0-d tensor)."""
    if hasattr(value, "item"):
        value = value.item()
    return float(value)
