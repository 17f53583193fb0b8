"""Opening a study storage, checked before use: SQLite (one machine), a journal file (a shared
filesystem without a database server: sweep.store.journal) or PostgreSQL (many machines or
many workers).

Usage::

    check_storage_url(url)              # parses, driver installed, SQLite file usable: no connection
    storage = open_storage(url)         # an Optuna RDBStorage with heartbeats

Every problem is a one-line UserError naming `study.storage` with the password hidden.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import warnings
from pathlib import Path
from typing import Any

from sweep.core.errors import UserError
from sweep.core.redact import redact_text, redact_url
from sweep.store.journal import check_journal, journal_file, open_journal
from sweep.store.locks import sqlite_creation_lock
from sweep.store.queue import requeue_trial


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def check_sqlite_file(path: Path) -> None:
    """Refuse a file that is not an SQLite database, or one that is not an Optuna storage."""
    if path.is_dir():
        raise UserError(
            f"study.storage: {path} is a folder, not a database file; "
            f"point study.storage at a file, e.g. sqlite:///{path / 'lrsweep.db'}"
        )
    if not path.exists():
        if not path.parent.exists():
            raise UserError(
                f"study.storage: folder {path.parent} does not exist; create it or pick another path"
            )
        if not path.parent.is_dir():
            raise UserError(
                f"study.storage: {path.parent} is a file, not a folder; pick another path for the database file"
            )
        if not os.access(path.parent, os.W_OK):
            raise UserError(
                f"study.storage: folder {path.parent} is not writable; pick another study.storage or results_dir"
            )
        return
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
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


def _holds_tables(path: Path) -> bool:
    """Does the SQLite file exist with Optuna's tables in it (read-only; False on any doubt)?"""
    if not path.is_file():
        return False
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=sqlite_timeout())
        try:
            return bool(con.execute("SELECT 1 FROM sqlite_master WHERE name='studies'").fetchone())
        finally:
            con.close()
    except sqlite3.Error:
        return False


def _enable_wal(path: Path) -> None:
    """WAL journal: readers never block the writer, so parallel workers rarely wait on locks."""
    con = sqlite3.connect(str(path), timeout=sqlite_timeout())
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


SQLITE_TIMEOUT_ENV = (
    "LRSWEEP_SQLITE_TIMEOUT"  # seconds a storage call waits for SQLite's write lock
)


def sqlite_timeout() -> float:
    """How long a storage call waits for another process's write lock on the SQLite file (its
    busy timeout): 120 s, or LRSWEEP_SQLITE_TIMEOUT seconds."""
    text = os.environ.get(SQLITE_TIMEOUT_ENV, "").strip()
    try:
        return float(text) if text else 120.0
    except ValueError:
        raise UserError(
            f"{SQLITE_TIMEOUT_ENV}={text!r}: not a number of seconds; unset it or give e.g. 300"
        ) from None


class DatabaseLocked(UserError):
    """The SQLite file stayed locked by another process for longer than the busy timeout."""


def _serialize_sqlite_transactions(engine: Any, path: Path, timeout: float) -> None:
    """Start every SQLite transaction with BEGIN IMMEDIATE.

    Python's sqlite3 driver begins a transaction only at the first write, so Optuna's
    read-check-write updates (claiming a WAITING trial, refusing to finish a finished one) are
    not atomic between processes: two workers can both read WAITING and both claim the trial.
    Taking the write lock at BEGIN makes each of them atomic (SQLAlchemy's documented recipe).

    It is also the one place where a storage call meets another process's lock (in WAL mode a
    transaction that holds the write lock from its BEGIN is never refused later): SQLite's busy
    timeout makes it wait up to `timeout` seconds for the lock, and a lock held longer than
    that (an open sqlite3 shell, a database browser) ends the call with one line
    (`DatabaseLocked`) instead of Optuna's StorageInternalError and its traceback.
    """
    import sqlalchemy.exc
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except sqlalchemy.exc.OperationalError as e:
            if "locked" not in str(e.orig).lower():
                raise
            raise DatabaseLocked(
                f"study.storage: {path} stayed locked by another process for {timeout:g} s; "
                f"the results stored so far are kept: close what holds the file (an sqlite3 shell, "
                f"a database browser, a stuck process) or set {SQLITE_TIMEOUT_ENV}=SECONDS to wait "
                f"longer, then run the same command again"
            ) from None

    engine.dispose()  # connections made before the listeners existed are not reused


def driver_url(url: str, has_module: Any = None) -> str:
    """The URL SQLAlchemy is given: a `postgresql://` URL that names no driver is sent to psycopg 3
    (`postgresql+psycopg://`) when psycopg 3 is installed, which is what `lrsweep[postgres]`
    installs. SQLAlchemy below 2.1 would send it to psycopg2, which the extra does not install.
    Any other URL, or one naming its driver, is given as it is. `has_module(name)`: is a module
    importable (a test's stand-in)."""
    import importlib.util

    if has_module is None:
        has_module = lambda name: importlib.util.find_spec(name) is not None  # noqa: E731
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() == "postgresql" and has_module("psycopg"):
        return f"postgresql+psycopg://{rest}"
    return url


POSTGRES_DRIVER_FIX = (
    "pip install 'lrsweep[postgres]' (psycopg 3, which postgresql:// URLs use; "
    "postgresql+psycopg2:// needs psycopg2 instead)"
)


def check_storage_url(url: str, create: bool = True) -> None:
    """Checks of a storage URL that neither connect nor write (done before any work starts):
    the URL parses, its database driver is installed and an SQLite file is usable.

    With `create=False` an SQLite file that does not exist is an error (read-only commands).
    """
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    safe = redact_url(url)
    if "://" not in url:
        raise UserError(
            f"study.storage: {safe!r} is not a database URL; use sqlite:///path/to/file.db, "
            f"journal:///shared/path/study.log or postgresql://user@host/db"
        )
    journal = journal_file(url)
    if journal is not None:
        check_journal(journal, create)
        return
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is None:
            raise UserError(
                f"study.storage: {safe!r} names no file; use sqlite:///path/to/file.db "
                f"(three slashes, then the path; four for an absolute path)"
            )
        if not create and not path.exists():
            raise UserError(
                f"study.storage: {path} does not exist; run `sweep run` first or point "
                f"study.storage at an existing storage"
            )
        check_sqlite_file(path)
        return
    try:
        dialect = make_url(driver_url(url)).get_dialect()
        # Import the driver module (psycopg, ...): SQLAlchemy 2 calls it import_dbapi, 1.4 dbapi.
        load_driver = getattr(dialect, "import_dbapi", None) or dialect.dbapi
        load_driver()
    except sqlalchemy.exc.NoSuchModuleError:  # (a subclass of ArgumentError)
        scheme = url.split("://", 1)[0]
        raise UserError(
            f"study.storage: unknown database type {scheme!r} in {safe!r}; "
            f"use sqlite:///file.db or postgresql://user@host/db"
        ) from None
    except (sqlalchemy.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise UserError(
            f"study.storage: {safe!r} is not a valid database URL; "
            f"use sqlite:///file.db or postgresql://user@host:port/db"
        ) from None
    except ImportError as e:
        raise UserError(_no_driver(safe, e.name)) from None


def _no_driver(safe_url: str, module: str | None) -> str:
    missing = f"no module {module!r}" if module else "its module cannot be imported"
    return (
        f"study.storage: the database driver for {safe_url!r} is not installed ({missing}); install it "
        f"(PostgreSQL: {POSTGRES_DRIVER_FIX}) or use sqlite:///file.db"
    )


def open_storage(
    url: str, heartbeat_seconds: int = 10, grace_seconds: int = 60, create: bool = True
) -> Any:
    """An Optuna RDBStorage for `url`, with heartbeats (a JournalStorage for journal://PATH);
    raises UserError for bad/unreachable URLs.

    With `create=False` an SQLite file that does not exist is an error (read-only commands).
    """
    check_storage_url(url, create)  # before importing Optuna: a bad URL is told at once
    journal = journal_file(url)
    if journal is not None:
        return open_journal(journal)
    import optuna
    import sqlalchemy.exc

    safe = redact_url(url)
    path = _sqlite_path(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if path is not None:
        engine_kwargs = {"connect_args": {"timeout": sqlite_timeout()}}
    try:
        # A new SQLite storage creates its tables under a lock: two launchers starting at once
        # would otherwise both create them, and one fail with "table ... already exists".
        fresh = path is not None and not _holds_tables(path)
        with (
            sqlite_creation_lock(path) if fresh else contextlib.nullcontext(),
            warnings.catch_warnings(),
        ):
            if path is not None:
                _enable_wal(path)
            # heartbeat_interval is flagged experimental; it is the documented way to find
            # trials of dead workers, which resuming depends on.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = _created_once(
                lambda: optuna.storages.RDBStorage(
                    driver_url(url),
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_seconds,
                    grace_period=grace_seconds,
                    heartbeat_stale_trial_callback=_requeue_stale,
                ),
                server=path is None,
            )
        if path is not None:
            _serialize_sqlite_transactions(storage.engine, path, sqlite_timeout())
        return storage
    except sqlalchemy.exc.NoSuchModuleError:  # before ArgumentError, its base class
        raise UserError(
            f"study.storage: no database driver for {safe!r}; use sqlite:/// or postgresql:// "
            f"({POSTGRES_DRIVER_FIX})"
        ) from None
    except sqlalchemy.exc.ArgumentError:
        raise UserError(
            f"study.storage: {safe!r} is not a valid database URL; use sqlite:///file.db or postgresql://user@host/db"
        ) from None
    except ImportError as e:  # Optuna re-raises a missing driver as a bare ImportError
        raise UserError(_no_driver(safe, getattr(e.__cause__, "name", None) or e.name)) from None
    except (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.DatabaseError,
        sqlite3.DatabaseError,
    ) as e:
        reason = (
            str(getattr(e, "orig", e)).strip().splitlines()[0]
            if str(getattr(e, "orig", e)).strip()
            else type(e).__name__
        )
        raise UserError(
            f"study.storage: cannot open {safe} ({redact_text(reason, url)}); check the URL, "
            f"that the server runs and accepts this user"
        ) from None
    except RuntimeError as e:  # Optuna: schema version mismatch and similar
        raise UserError(
            f"study.storage: cannot use {safe} ({redact_text(str(e).splitlines()[0], url)})"
        ) from None


# How often a process opening a new database on a server tries again when another process
# created its tables at the same moment (workers started together on an empty PostgreSQL).
CREATION_TRIES = 5


def _created_once(open_rdb: Any, server: bool) -> Any:
    """`open_rdb()`, tried again when it lost the race to create a new database's tables.

    Optuna creates its tables (and Alembic's version table) when a storage is first opened. On
    an empty PostgreSQL database, workers started at the same moment all try: PostgreSQL lets
    one create each table and fails the others' CREATE TABLE with a unique violation (in
    pg_type) or "already exists", which would end those workers. Their transaction is rolled
    back, and opening again finds the tables made. SQLite files are created under a lock
    instead (`sqlite_creation_lock`)."""
    import time

    import sqlalchemy.exc

    for attempt in range(CREATION_TRIES - 1):
        try:
            return open_rdb()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as e:
            lost_race = isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(
                getattr(e, "orig", e)
            )
            if not server or not lost_race:
                raise
            time.sleep(0.2 * (attempt + 1))
    return open_rdb()  # the last try: its error is the one told


def _requeue_stale(study: Any, trial: Any) -> None:
    """Optuna's heartbeat-stale callback: queue a fresh copy of the trial (its worker died)."""
    requeue_trial(study, trial, died=True)
