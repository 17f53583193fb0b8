"""Who works on a trial, and what happens when a worker dies.

A worker records its identity (host, pid, process start time) on the trial it claimed and keeps a
heartbeat. On its own host a dead worker is known at once; on another host a trial is reclaimed
once its heartbeat is older than the grace period. A trial whose worker died is queued again up
to study.max_retries times (sweep.store.queue.requeue_trial).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from typing import Any

from sweep.store._optuna import storage_of, trial_id
from sweep.store.queue import claimants, fail_and_requeue


def this_worker() -> dict[str, Any]:
    """Identity of this process: host, pid and process start time (pid reuse safe)."""
    import psutil

    return {"host": hostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def hostname() -> str:
    """This machine's name as recorded on trials; LRSWEEP_HOST overrides it (e.g. containers
    that share a hostname, or tests that play several machines on one)."""
    return os.environ.get("LRSWEEP_HOST") or socket.gethostname()


def worker_alive(worker: dict[str, Any]) -> bool | None:
    """True/False for a worker on this host; None when it runs on another host (unknowable)."""
    import psutil

    if worker.get("host") != hostname():
        return None
    try:
        proc = psutil.Process(int(worker["pid"]))
        return (
            abs(proc.create_time() - float(worker["started"])) < 1e-3
            and proc.status() != psutil.STATUS_ZOMBIE
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        return False


HEARTBEAT = "heartbeat"  # user attr: wall-clock time (epoch seconds) of the trial's last heartbeat


def heartbeat_age(trial: Any, now: float | None = None) -> float | None:
    """Seconds since the trial's last heartbeat (since its start while it has none yet)."""
    now = time.time() if now is None else now
    beat = trial.user_attrs.get(HEARTBEAT)
    if beat is None and trial.datetime_start is not None:
        beat = trial.datetime_start.timestamp()
    return None if beat is None else max(0.0, now - float(beat))


def worker_gone(trial: Any, grace_seconds: float) -> str | None:
    """Why the worker of a RUNNING trial is taken to be gone (None while it may be alive).

    On this host a dead worker is known at once (its pid is gone or belongs to another process).
    So is a worker killed between claiming the trial and writing its identity on it, when every
    process that tried to claim the trial (`claimants`) is dead on this host. A worker on another
    host is presumed alive until the trial's heartbeat is older than the grace period.
    """
    worker = trial.user_attrs.get("worker")
    alive = worker_alive(worker) if worker is not None else None
    if alive is False:
        return f"its worker process (pid {worker.get('pid')} on {worker.get('host')}) died"
    tried = claimants(trial) if worker is None else []
    if tried and all(worker_alive(c) is False for c in tried):
        # Killed between its claim and `claim_for`: whichever claimant won, every one is dead.
        pids = " or ".join(str(c.get("pid")) for c in tried)
        return f"its worker process (pid {pids} on {tried[0].get('host')}) died"
    age = heartbeat_age(trial)
    if alive is None and age is not None and age > grace_seconds:
        where = f" on {worker.get('host')}" if worker else ""
        return f"no heartbeat for {age:.0f} s (its worker{where} stopped)"
    return None


def reclaim_orphans(study: Any, grace_seconds: float) -> int:
    """Fail and re-queue RUNNING trials whose worker is gone (`worker_gone`), on every kind of
    storage: lrsweep's own heartbeat (a trial attribute) works where Optuna's does not (a
    journal file); on a database Optuna's `fail_stale_trials` runs as well (the server's clock)."""
    import optuna
    from optuna.trial import TrialState

    reclaimed = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        why = worker_gone(t, grace_seconds)
        if why is not None:
            reclaimed += fail_and_requeue(study, t, why, died=True)
    if hasattr(storage_of(study), "record_heartbeat"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    return reclaimed


def claim_for(study: Any, trial: Any, worker: dict[str, Any]) -> None:
    """Record on a claimed trial which worker runs it (`this_worker()`)."""
    storage_of(study).set_trial_user_attr(trial_id(trial), "worker", worker)


class Heartbeat:
    """Records the trial's heartbeat every `interval` seconds in a thread, while training runs:
    lrsweep's own (a trial attribute, on every storage) and Optuna's where the storage has it."""

    def __init__(self, study: Any, trial: Any, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage_of(study), trial_id(trial), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lrsweep-heartbeat", daemon=True)

    def beat(self) -> None:
        self.storage.set_trial_user_attr(self.trial_id, HEARTBEAT, time.time())
        if hasattr(self.storage, "record_heartbeat"):
            self.storage.record_heartbeat(self.trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a missed beat is harmless; the next one retries
                pass

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
