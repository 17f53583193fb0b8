"""Who works on a trial, and what happens when a worker dies.

A worker records its identity (host, pid, process start time) on the trial it claimed and keeps a
heartbeat. On its own host a dead worker is known at once; on another host a trial is reclaimed
once its heartbeat is older than the grace period.
"""

from __future__ import annotations

import os
import socket
import threading
import warnings
from typing import Any

from sweep.store._optuna import storage_of, trial_id
from sweep.store.queue import fail_and_requeue


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


def reclaim_orphans(study: Any, grace_seconds: float) -> int:
    """Fail and re-queue RUNNING trials whose worker is gone.

    On this host a dead worker is known at once (its pid is gone or belongs to another process);
    a worker on another host is presumed alive until its heartbeat is older than the grace
    period (Optuna's `fail_stale_trials`). A trial claimed by a worker that died before it wrote
    its identity is reclaimed once its start is older than the grace period.
    """
    import datetime as dt

    import optuna
    from optuna.trial import TrialState

    reclaimed = 0
    now = dt.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if worker is not None:
            dead = worker_alive(worker) is False
        else:
            dead = (
                t.datetime_start is not None
                and (now - t.datetime_start).total_seconds() > grace_seconds
            )
        if not dead:
            continue
        reclaimed += fail_and_requeue(study, t, "worker process died")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return reclaimed


def claim_for(study: Any, trial: Any, worker: dict[str, Any]) -> None:
    """Record on a claimed trial which worker runs it (`this_worker()`)."""
    storage_of(study).set_trial_user_attr(trial_id(trial), "worker", worker)


class Heartbeat:
    """Records the trial's heartbeat every `interval` seconds in a thread, while training runs."""

    def __init__(self, study: Any, trial: Any, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage_of(study), trial_id(trial), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lrsweep-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # a missed beat is harmless; the next one retries
                pass

    def __enter__(self) -> Heartbeat:
        self.storage.record_heartbeat(self.trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
