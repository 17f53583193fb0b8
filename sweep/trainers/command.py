"""`trainer=command`: a user's training script, run once per (setting, seed).

Usage (by the worker)::

    trainer = CommandTrainer(cfg, device="cuda:1", on_epoch=report_position)
    records = trainer.train(setting, seeds=[0, 1, 2], should_stop=stop)

Each run is `/bin/sh -c <the rendered command>` under a supervisor (`supervise.py`) that leads
its own process group and dies, with the whole group, when the worker dies. The run sees:

- its values as placeholders in the command and as LRSWEEP_* environment variables;
- only its worker's GPU (CUDA_VISIBLE_DEVICES), and OMP_NUM_THREADS / MKL_NUM_THREADS = `threads`;
- a private folder `{run_dir}` (its stdout.log and stderr.log are kept there) and
  `{checkpoint_dir}`, kept across attempts until the trial is stored: a script that resumes from
  it continues after a kill; with an empty one it starts from scratch (an old metrics file is
  removed first).

While it runs, the metrics file is read about once a second: new epochs are reported as
progress, a non-finite loss stops the run (a `nonfinite` collapse), and so do the time limit
(`timed_out`) and a stop request (the trial is released and the run starts again later).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweep.core.errors import StopRequested, UserError
from sweep.core.records import RunRecord
from sweep.trainers.external import (
    Ending,
    ExternalTrainer,
    first_nonfinite,
    header_line,
    output_reason,
)
from sweep.trainers.logs import LogError, read_log
from sweep.trainers.placeholders import render, run_environment, run_values
from sweep.trainers.runs import RunPaths
from sweep.trainers.supervise import arm_parent_death_signal

SUPERVISOR = str(Path(__file__).with_name("supervise.py"))
POLL_SECONDS = 0.05  # how often the run's process is looked at ...
READ_SECONDS = 1.0  # ... and its metrics file read
LIVE_READ_ERRORS = 3  # a log unreadable this many reads in a row while the run goes is an error


def visible_devices(device: str, inherited: str | None) -> str:
    """CUDA_VISIBLE_DEVICES for a run of a worker on `device`: that GPU only, by its physical
    index when the worker itself sees a subset (inherited "3,5" and cuda:1 -> "5"); none on a
    CPU worker."""
    if not device.startswith("cuda"):
        return ""
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    listed = [d.strip() for d in (inherited or "").split(",") if d.strip()]
    return listed[index] if index < len(listed) else str(index)


def run_env(
    device: str, threads: int, values: dict[str, str], setting: dict[str, Any]
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(run_environment(values, setting))
    env["CUDA_VISIBLE_DEVICES"] = visible_devices(device, os.environ.get("CUDA_VISIBLE_DEVICES"))
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


class CommandTrainer(ExternalTrainer):
    """Runs `trainer.command` per (setting, seed) and reads the metrics file it writes."""

    def metrics_path(self, paths: RunPaths) -> Path:
        return paths.run_dir / self.options.metrics_file

    def describe(self) -> str:
        gpu = visible_devices(self.device, os.environ.get("CUDA_VISIBLE_DEVICES"))
        where = (
            f"{self.device} (CUDA_VISIBLE_DEVICES={gpu})"
            if gpu
            else f"cpu ({self.cfg.threads} thread(s))"
        )
        return f"command on {where}"

    def run_one(
        self, setting: dict[str, Any], seed: int, paths: RunPaths, should_stop: Callable[[], bool]
    ) -> RunRecord:
        resumable = paths.prepare()
        metrics = self.metrics_path(paths)
        if not resumable:  # a fresh start: nothing of an earlier attempt may be read as this run's
            metrics.unlink(missing_ok=True)
        metrics.parent.mkdir(parents=True, exist_ok=True)
        values = run_values(
            setting,
            seed,
            self.cfg.epochs,
            metrics,
            paths.run_dir,
            paths.checkpoint_dir,
            init_checkpoint=self.init_checkpoint,
            start_epoch=self.start_epoch,
        )
        command = render(self.options.command, values)
        start = time.monotonic()
        proc = self._start(command, paths, run_env(self.device, self.cfg.threads, values, setting))
        try:
            ending, log = self._watch(proc, metrics, seed, start, should_stop)
            if ending.failure is None and not ending.stopped_nonfinite:
                log = read_log(
                    metrics,
                    self.options.columns,
                    metric=self.log_metric,
                    final=True,
                    start_epoch=self.start_epoch,
                )  # a bad log is the user's error
            else:
                log = self._tolerant_read(metrics) or log
        except LogError as e:  # known only once the run has started: point at what it printed
            raise LogError(
                f"{e}; the run's own output is in {paths.run_dir / 'stderr.log'} and stdout.log"
            ) from None
        return self.record(seed, log, ending, paths, time.monotonic() - start, self.describe())

    def _start(self, command: str, paths: RunPaths, env: dict[str, str]) -> subprocess.Popen:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        out = open(paths.run_dir / "stdout.log", "ab")
        err = open(paths.run_dir / "stderr.log", "ab")
        for f in (out, err):
            f.write(header_line(stamp, command).encode())
            f.flush()
        try:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    SUPERVISOR,
                    str(self.options.stop_grace_seconds),
                    "--",
                    "/bin/sh",
                    "-c",
                    command,
                ],
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=arm_parent_death_signal,
            )
        finally:
            out.close()
            err.close()

    def _watch(
        self,
        proc: subprocess.Popen,
        metrics: Path,
        seed: int,
        start: float,
        should_stop: Callable[[], bool],
    ) -> tuple[Ending, Any]:
        """Poll the run until it ends; stop it at a non-finite loss, the time limit or a stop request."""
        log, reported, last_read, errors = None, 0, 0.0, 0
        while True:
            code = proc.poll()
            now = time.monotonic()
            if code is not None or now - last_read >= READ_SECONDS:
                last_read = now
                log, errors = self._live_read(metrics, proc, log, errors)
                if log is not None and len(log.epochs) > reported:
                    reported = len(log.epochs)
                    self.on_epoch(seed, reported)
            if code is not None:
                if code == 0:
                    return Ending(), log
                return Ending("crashed", self._crash_reason(code, metrics.parent)), log
            if log is not None and first_nonfinite(log.epochs) is not None:
                self._stop(proc)
                return Ending(stopped_nonfinite=True), log
            if now - start > self.timeout_seconds:
                self._stop(proc)
                minutes = self.options.timeout_minutes
                return Ending(
                    "timed_out", f"still running after trainer.timeout_minutes={minutes:g}"
                ), log
            if should_stop():
                self._stop(proc)
                raise StopRequested("stopped while a training command ran")
            time.sleep(POLL_SECONDS)

    def _live_read(
        self, metrics: Path, proc: subprocess.Popen, last: Any, errors: int
    ) -> tuple[Any, int]:
        """(the log so far, consecutive failed reads). A log that cannot be parsed three reads in a
        row stops the run: it is the user's error (one bad read may catch a file being rewritten)."""
        try:
            return self._partial_log(metrics), 0
        except LogError:
            if errors + 1 >= LIVE_READ_ERRORS and proc.poll() is None:
                self._stop(proc)
                raise
            return last, errors + 1

    def _partial_log(self, metrics: Path) -> Any:
        """The metrics file as far as the run has written it."""
        return read_log(
            metrics,
            self.options.columns,
            metric=self.log_metric,
            final=False,
            start_epoch=self.start_epoch,
        )

    def _tolerant_read(self, metrics: Path) -> Any:
        """What a failed run logged, as far as it can be read (a crash may cut the last line)."""
        try:
            return self._partial_log(metrics)
        except (LogError, UserError, OSError):
            return None

    def _crash_reason(self, code: int, run_dir: Path) -> str:
        if code > 128:
            what = (
                f"killed by signal {code - 128} ({signal.Signals(code - 128).name})"
                if code - 128 in signal.valid_signals()
                else f"exit status {code}"
            )
        else:
            what = f"exit status {code}"
        return output_reason(what, run_dir)

    def _stop(self, proc: subprocess.Popen) -> None:
        """SIGTERM to the run's supervisor (it ends the group: SIGTERM, grace, SIGKILL); SIGKILL
        the group ourselves if the supervisor does not end in time."""
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=self.options.stop_grace_seconds + 5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
