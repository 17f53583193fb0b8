"""The Optuna study: the single source of truth of a sweep.

One trial = one grid setting and a list of seeds. Trials are queued as WAITING trials with fixed
params (Optuna's own queue, the mechanism behind `enqueue_trial`); a worker claims one with the
storage's atomic WAITING -> RUNNING transition, trains its seeds, stores one compact record per
seed in the trial's user attributes and finishes it with values (mean best accuracy, collapse
rate). Everything under results/ is rebuilt from these records.

Why not `GridSampler`: it counts a FAIL trial as a visited grid point (a setting whose worker was
killed would never be run again) and hands RUNNING points out a second time once every point has
started (duplicates with several workers). A queue of fixed-param trials, claimed atomically,
gives each setting to exactly one worker; orphaned trials are failed and queued again.

Storage layout:
  study user attrs: `lrsweep.comparable` (config keys that fix what results mean),
    `lrsweep.config` (the full config of the latest run), `lrsweep.task` (chance level, sizes).
  trial params: lr, batch_size, clip (absent: no clipping), numeric extra axes.
  trial user attrs: `setting` (all axes), `seeds`, `worker` (host, pid, start time),
    `run_<seed>` (compact record of one run), and a readable summary (mean_best_acc, ...).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import socket
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar

import numpy as np

from sweep.config import Config, comparable_part
from sweep.errors import UserError

DIRECTIONS = ("maximize", "minimize")  # values: mean best accuracy, collapse rate
ATTR_COMPARABLE = "lrsweep.comparable"
ATTR_CONFIG = "lrsweep.config"
ATTR_TASK = "lrsweep.task"
RUN_PREFIX = "run_"

T = TypeVar("T")


# --------------------------------------------------------------------------- storage


def _credentials(url: str) -> tuple[str, str, Optional[str], str]:
    """(scheme, user, password or None, rest after the credentials) of a database URL.

    Parsed the way SQLAlchemy reads it (the user has no ':' or '/', the password may hold any
    character up to the host), except that the credentials end at the *last* '@': a password
    with an unescaped '@' or '/' is then hidden whole, never shown in part.
    """
    scheme, rest = url.split("://", 1)
    at = rest.rfind("@")
    if scheme.startswith("sqlite") or at < 0:
        return scheme, "", None, rest
    userinfo, host = rest[:at], rest[at + 1:]
    user, sep, password = userinfo.partition(":")
    return scheme, user, (password if sep else None), host


_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")
# Any URL with credentials inside free text: scheme://user:password@ (password up to the last
# '@' before a space or quote, so one containing '@' is hidden whole).
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:)[^\s'\"]*@")


def redact_url(url: str) -> str:
    """The storage URL with any password replaced by *** (safe to print, log and store)."""
    if "://" not in url:
        return redact_secrets(url)
    scheme, user, password, host = _credentials(url)
    if password is None:
        out = url
    else:
        out = f"{scheme}://{user}:***@{host}"
    return _QUERY_PASSWORD.sub(r"\1***", out)


def redact_secrets(text: str) -> str:
    """`text` with the password of every URL in it replaced by *** (a last line of defence for
    messages that may quote a URL: parse errors, driver errors)."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_CREDENTIALS.sub(r"\1***@", text))


def _sqlite_path(url: str) -> Optional[Path]:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def check_sqlite_file(path: Path) -> None:
    """Refuse a file that is not an SQLite database, or one that is not an Optuna storage."""
    if path.is_dir():
        raise UserError(f"study.storage: {path} is a folder, not a database file; "
                        f"point study.storage at a file, e.g. sqlite:///{path / 'lrsweep.db'}")
    if not path.exists():
        if not path.parent.exists():
            raise UserError(f"study.storage: folder {path.parent} does not exist; create it or pick another path")
        if not path.parent.is_dir():
            raise UserError(f"study.storage: {path.parent} is a file, not a folder; pick another path for the database file")
        if not os.access(path.parent, os.W_OK):
            raise UserError(f"study.storage: folder {path.parent} is not writable; pick another study.storage or results_dir")
        return
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise UserError(
            f"study.storage: {path} is not a readable SQLite database ({e}); "
            f"move it aside or point study.storage at another file"
        ) from None
    if tables and "studies" not in tables:
        raise UserError(
            f"study.storage: {path} is an SQLite database but not an Optuna/lrsweep storage "
            f"(tables: {', '.join(sorted(tables)[:5])}); point study.storage at another file"
        )


def _enable_wal(path: Path) -> None:
    """WAL journal: readers never block the writer, so parallel workers rarely wait on locks."""
    con = sqlite3.connect(str(path), timeout=60)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def _serialize_sqlite_transactions(engine: Any) -> None:
    """Start every SQLite transaction with BEGIN IMMEDIATE.

    Python's sqlite3 driver begins a transaction only at the first write, so Optuna's
    read-check-write updates (claiming a WAITING trial, refusing to finish a finished one) are
    not atomic between processes: two workers can both read WAITING and both claim the trial.
    Taking the write lock at BEGIN makes each of them atomic (SQLAlchemy's documented recipe);
    the busy timeout makes concurrent workers wait for the lock instead of failing.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners existed are not reused


def check_storage_url(url: str, create: bool = True) -> None:
    """Checks of a storage URL that neither connect nor write (done before any work starts):
    the URL parses, its database driver is installed and an SQLite file is usable.

    With `create=False` an SQLite file that does not exist is an error (read-only commands).
    """
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    safe = redact_url(url)
    if "://" not in url:
        raise UserError(f"study.storage: {safe!r} is not a database URL; use sqlite:///path/to/file.db or postgresql://user@host/db")
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is None:
            raise UserError(f"study.storage: {safe!r} names no file; use sqlite:///path/to/file.db "
                            f"(three slashes, then the path; four for an absolute path)")
        if not create and not path.exists():
            raise UserError(f"study.storage: {path} does not exist; run `sweep run` first or point study.storage at an existing storage")
        check_sqlite_file(path)
        return
    try:
        dialect = make_url(url).get_dialect()
        # Import the driver module (psycopg2, ...): SQLAlchemy 2 calls it import_dbapi, 1.4 dbapi.
        load_driver = getattr(dialect, "import_dbapi", None) or dialect.dbapi
        load_driver()
    except sqlalchemy.exc.NoSuchModuleError:  # (a subclass of ArgumentError)
        scheme = url.split("://", 1)[0]
        raise UserError(f"study.storage: unknown database type {scheme!r} in {safe!r}; "
                        f"use sqlite:///file.db or postgresql://user@host/db") from None
    except (sqlalchemy.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise UserError(f"study.storage: {safe!r} is not a valid database URL; "
                        f"use sqlite:///file.db or postgresql://user@host:port/db") from None
    except ImportError as e:
        raise UserError(_no_driver(safe, e.name)) from None


def _no_driver(safe_url: str, module: Optional[str]) -> str:
    missing = f"no module {module!r}" if module else "its module cannot be imported"
    return (f"study.storage: the database driver for {safe_url!r} is not installed ({missing}); install it "
            f"(PostgreSQL: pip install 'lrsweep[postgres]' and postgresql+psycopg2://...) or use sqlite:///file.db")


def open_storage(url: str, heartbeat_seconds: int = 10, grace_seconds: int = 60, create: bool = True) -> Any:
    """An Optuna RDBStorage for `url`, with heartbeats; raises UserError for bad/unreachable URLs.

    With `create=False` an SQLite file that does not exist is an error (read-only commands).
    """
    check_storage_url(url, create)  # before importing Optuna: a bad URL is told at once
    import optuna
    import sqlalchemy.exc

    safe = redact_url(url)
    path = _sqlite_path(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if path is not None:
        engine_kwargs = {"connect_args": {"timeout": 120}}
    try:
        if path is not None:
            _enable_wal(path)
        with warnings.catch_warnings():
            # heartbeat_interval is flagged experimental; it is the documented way to find
            # trials of dead workers, which resuming depends on.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_seconds,
                grace_period=grace_seconds,
                heartbeat_stale_trial_callback=requeue_trial,
            )
        if path is not None:
            _serialize_sqlite_transactions(storage.engine)
        return storage
    except sqlalchemy.exc.NoSuchModuleError:  # before ArgumentError, its base class
        raise UserError(f"study.storage: no database driver for {safe!r}; use sqlite:/// or postgresql:// (pip install psycopg2-binary)") from None
    except sqlalchemy.exc.ArgumentError:
        raise UserError(f"study.storage: {safe!r} is not a valid database URL; use sqlite:///file.db or postgresql://user@host/db") from None
    except ImportError as e:  # Optuna re-raises a missing driver as a bare ImportError
        raise UserError(_no_driver(safe, getattr(e.__cause__, "name", None) or e.name)) from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.DatabaseError, sqlite3.DatabaseError) as e:
        reason = str(getattr(e, "orig", e)).strip().splitlines()[0] if str(getattr(e, "orig", e)).strip() else type(e).__name__
        raise UserError(f"study.storage: cannot open {safe} ({redact_text(reason, url)}); check the URL, that the server runs and accepts this user") from None
    except RuntimeError as e:  # Optuna: schema version mismatch and similar
        raise UserError(f"study.storage: cannot use {safe} ({redact_text(str(e).splitlines()[0], url)})") from None


def redact_text(text: str, url: str) -> str:
    """Remove the password of `url` from a message (drivers sometimes echo the URL or the
    password, escaped or not)."""
    from urllib.parse import unquote

    secrets = []
    if "://" in url:
        password = _credentials(url)[2]
        if password:
            secrets.append(password)
    secrets += [m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(url)]
    for secret in secrets:
        for form in {secret, unquote(secret)}:
            if form:
                text = text.replace(form, "***")
    return redact_secrets(text)


def retry_locked(fn: Callable[[], T], attempts: int = 20) -> T:
    """Run a storage call, retrying while SQLite reports a lock (many workers on one file)."""
    import sqlalchemy.exc

    delay = 0.05
    for i in range(attempts):
        try:
            return fn()
        except sqlalchemy.exc.OperationalError as e:
            if "locked" not in str(e) or i == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(2.0, delay * 2)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- study


def setting_key(setting: dict[str, Any]) -> str:
    """Canonical text of a setting (dedupe key, checkpoint name)."""
    return json.dumps(setting, sort_keys=True)


def study_names(storage: Any) -> list[str]:
    import optuna

    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def load_study(storage: Any, name: str) -> Any:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        hint = f"studies there: {', '.join(names)}" if names else "it holds no study yet; run `sweep run` first"
        raise UserError(f"study.name: no study {name!r} in this storage; {hint}") from None


def check_comparable(study: Any, cfg: Config) -> None:
    """Refuse a config whose results would not be comparable with what the study holds."""
    stored = study.user_attrs.get(ATTR_COMPARABLE)
    if stored is None:
        return
    new = comparable_part(cfg)
    swept = {k for k, _ in cfg.grid.extra} | set(study.user_attrs.get(ATTR_CONFIG, {}).get("grid", {}))
    # Group choices first (optimizer.name says more than optimizer.beta1 appearing).
    for key in sorted(set(stored) | set(new), key=lambda k: (not k.endswith(".name"), k)):
        if key in swept:
            continue
        old_v, new_v = stored.get(key, "<unset>"), new.get(key, "<unset>")
        if old_v != new_v:
            raise UserError(
                f"{key}: study {study.study_name!r} was run with {key}={old_v!r}, this config has "
                f"{new_v!r}, so its results would not be comparable; start a new study "
                f"(study.name={study.study_name}-2) or set {key}={old_v!r}"
            )


def open_or_create_study(storage: Any, cfg: Config, task_info: dict[str, Any]) -> Any:
    """Load the study (checking comparability first) or create it; record config and task facts."""
    import optuna

    if cfg.study.name in study_names(storage):
        study = optuna.load_study(study_name=cfg.study.name, storage=storage)
        check_comparable(study, cfg)
        old_task = study.user_attrs.get(ATTR_TASK)
        if old_task and old_task.get("fingerprint") != task_info.get("fingerprint"):
            raise UserError(
                f"task: the data of study {cfg.study.name!r} differ from the data this config builds "
                f"(sizes or contents changed); start a new study (study.name={cfg.study.name}-2)"
            )
    else:
        try:
            study = optuna.create_study(study_name=cfg.study.name, storage=storage, directions=list(DIRECTIONS))
        except optuna.exceptions.DuplicatedStudyError:  # another worker created it meanwhile
            study = optuna.load_study(study_name=cfg.study.name, storage=storage)
        with warnings.catch_warnings():  # experimental API; names the values in optuna-dashboard
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["mean_best_acc", "collapse_rate"])
    if ATTR_COMPARABLE not in study.user_attrs:
        study.set_user_attr(ATTR_COMPARABLE, comparable_part(cfg))
        study.set_user_attr(ATTR_TASK, task_info)
    merged = cfg.to_dict()
    merged["study"]["storage"] = redact_url(cfg.storage_url())
    old = study.user_attrs.get(ATTR_CONFIG)
    if old is not None:  # the study's grid is the union of every grid run against it
        merged["grid"] = _union_grid(old.get("grid", {}), merged["grid"])
        merged["seeds"] = max(int(old.get("seeds", 0)), cfg.seeds)
    study.set_user_attr(ATTR_CONFIG, merged)
    return study


def _union_grid(old: dict[str, list], new: dict[str, list]) -> dict[str, list]:
    out = {k: list(v) for k, v in old.items()}
    for k, values in new.items():
        for v in values:
            if v not in out.setdefault(k, []):
                out[k].append(v)
    return out


# --------------------------------------------------------------------------- the queue of work


def _distributions(setting: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optuna params for a setting: numeric axes only, clip absent when there is no clipping."""
    from optuna.distributions import FloatDistribution, IntDistribution

    params: dict[str, Any] = {}
    dists: dict[str, Any] = {}
    for key, value in setting.items():
        if value is None or isinstance(value, (bool, str)):
            continue
        log = key in ("lr", "clip")
        if isinstance(value, int) and not log:
            params[key], dists[key] = value, IntDistribution(value, value)
        else:
            params[key], dists[key] = float(value), FloatDistribution(float(value), float(value), log=log and value > 0)
    return params, dists


def covered_seeds(trials: Iterable[Any]) -> dict[str, set[int]]:
    """Seeds of each setting that are done, running or queued (FAIL trials cover nothing)."""
    from optuna.trial import TrialState

    covered: dict[str, set[int]] = {}
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING) and "setting" in t.user_attrs:
            covered.setdefault(setting_key(t.user_attrs["setting"]), set()).update(t.user_attrs.get("seeds", []))
    return covered


def plan_work(cfg: Config, trials: Iterable[Any]) -> list[tuple[dict[str, Any], list[int]]]:
    """(setting, seeds) still to queue so that every setting of the grid has seeds 0..seeds-1."""
    covered = covered_seeds(trials)
    work = []
    for setting in cfg.grid.settings():
        have = covered.get(setting_key(setting), set())
        missing = [s for s in range(cfg.seeds) if s not in have]
        if missing:
            work.append((setting, missing))
    return work


def enqueue(study: Any, work: Sequence[tuple[dict[str, Any], list[int]]]) -> int:
    """Queue one WAITING trial per (setting, seeds); then drop duplicates a concurrent launcher
    may have queued at the same moment (the lowest trial number wins)."""
    import optuna

    for setting, seeds in work:
        params, dists = _distributions(setting)
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=params,
            distributions=dists,
            user_attrs={"setting": setting, "seeds": list(seeds)},
        )
        retry_locked(lambda: study.add_trial(trial))
    if work:
        drop_duplicate_waiting(study)
    return len(work)


def drop_duplicate_waiting(study: Any) -> int:
    """Claim and discard WAITING trials whose (setting, seed) another trial already covers."""
    from optuna.trial import TrialState

    storage = study._storage
    seen: set[tuple[str, int]] = set()
    dropped = 0
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if "setting" not in t.user_attrs or t.state not in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING):
            continue
        keys = {(setting_key(t.user_attrs["setting"]), s) for s in t.user_attrs.get("seeds", [])}
        if t.state == TrialState.WAITING and keys and keys <= seen:
            if _claim(storage, t._trial_id):
                storage.set_trial_user_attr(t._trial_id, "discarded", "duplicate of an earlier trial")
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                dropped += 1
            continue
        seen |= keys
    return dropped


def _claim(storage: Any, trial_id: int) -> bool:
    import optuna
    from optuna.trial import TrialState

    try:
        return bool(retry_locked(lambda: storage.set_trial_state_values(trial_id, TrialState.RUNNING)))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _longest_first(trial: Any) -> tuple[float, int]:
    """Claim order: the most optimizer steps first (seeds / batch size), then queue order, so
    the last trials to finish are short ones and workers do not idle at the end of a sweep."""
    setting = trial.user_attrs.get("setting", {})
    batch = setting.get("batch_size") or 1
    return (-len(trial.user_attrs.get("seeds", [])) / float(batch), trial.number)


def pop_trial(study: Any) -> Optional[Any]:
    """Atomically claim a WAITING trial (WAITING -> RUNNING), longest first; None when none is left."""
    from optuna.trial import TrialState

    storage = study._storage
    waiting = retry_locked(lambda: storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)))
    for t in sorted(waiting, key=_longest_first):
        if _claim(storage, t._trial_id):
            return storage.get_trial(t._trial_id)
    return None


def requeue_trial(study: Any, trial: Any) -> None:
    """Queue a fresh WAITING copy of a failed trial (same setting and seeds).

    Used for trials whose worker died (heartbeat stale, or its process is gone) and for trials a
    worker released when asked to stop. Also Optuna's heartbeat-stale callback.
    """
    import optuna

    if "setting" not in trial.user_attrs or trial.user_attrs.get("discarded"):
        return
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    retry_locked(lambda: study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={"setting": trial.user_attrs["setting"], "seeds": trial.user_attrs.get("seeds", [])},
            system_attrs={"failed_trial": history[0], "retry_history": history},
        )
    ))


# --------------------------------------------------------------------------- workers and orphans


def this_worker() -> dict[str, Any]:
    """Identity of this process: host, pid and process start time (pid reuse safe)."""
    import psutil

    return {"host": hostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def hostname() -> str:
    """This machine's name as recorded on trials; LRSWEEP_HOST overrides it (e.g. containers
    that share a hostname, or tests that play several machines on one)."""
    return os.environ.get("LRSWEEP_HOST") or socket.gethostname()


def worker_alive(worker: dict[str, Any]) -> Optional[bool]:
    """True/False for a worker on this host; None when it runs on another host (unknowable)."""
    import psutil

    if worker.get("host") != hostname():
        return None
    try:
        proc = psutil.Process(int(worker["pid"]))
        return abs(proc.create_time() - float(worker["started"])) < 1e-3 and proc.status() != psutil.STATUS_ZOMBIE
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
            dead = t.datetime_start is not None and (now - t.datetime_start).total_seconds() > grace_seconds
        if not dead:
            continue
        reclaimed += fail_and_requeue(study, t._trial_id, "worker process died")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return reclaimed


def fail_and_requeue(study: Any, trial_id: int, reason: str) -> bool:
    """Fail a RUNNING trial (noting why) and queue a fresh copy of it; False when it had
    finished meanwhile (its worker completed it, or another process reclaimed it first)."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    try:
        retry_locked(lambda: storage.set_trial_user_attr(trial_id, "fail_reason", reason))
        if retry_locked(lambda: storage.set_trial_state_values(trial_id, TrialState.FAIL)):
            requeue_trial(study, storage.get_trial(trial_id))
            return True
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
    return False


class Heartbeat:
    """Records the trial's heartbeat every `interval` seconds in a thread, while training runs."""

    def __init__(self, storage: Any, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lrsweep-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                retry_locked(lambda: self.storage.record_heartbeat(self.trial_id))
            except Exception:  # a missed beat is harmless; the next one retries
                pass

    def __enter__(self) -> "Heartbeat":
        retry_locked(lambda: self.storage.record_heartbeat(self.trial_id))
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- run records


def encode_floats(values: Sequence[float]) -> str:
    """float32 little-endian, base64: exact for float32, NaN/inf kept, ~5.3 characters a value."""
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def decode_floats(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


def encode_record(record: Any) -> dict[str, Any]:
    return {
        "seed": record.seed,
        "nonfinite": record.nonfinite,
        "nonfinite_epoch": record.nonfinite_epoch,
        "steps": record.steps,
        "seconds": round(record.seconds, 3),
        "device": record.device,
        "curves": {k: encode_floats(v) for k, v in record.curves.items()},
    }


def decode_record(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out["curves"] = {k: decode_floats(v) for k, v in data["curves"].items()}
    return out


def store_results(study: Any, trial: Any, records: Sequence[Any], summary: dict[str, Any]) -> None:
    """Write each seed's record and the trial's summary, then complete it with its values."""
    storage = study._storage
    for rec in records:
        retry_locked(lambda: storage.set_trial_user_attr(trial._trial_id, f"{RUN_PREFIX}{rec.seed}", encode_record(rec)))
    for key, value in summary.items():
        retry_locked(lambda: storage.set_trial_user_attr(trial._trial_id, key, value))
    values = [summary["mean_best_acc"], summary["collapse_rate"]]
    assert all(math.isfinite(v) for v in values), values  # a NaN value would FAIL the trial
    retry_locked(lambda: study.tell(trial.number, values=values))
