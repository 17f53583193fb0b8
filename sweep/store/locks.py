"""One launcher at a time in a study's read-modify-write of its own records.

Usage::

    with study_lock(storage, "my-study"):
        ... read the study's config, merge this run's grid into it, write it back ...

Two launchers starting together both read the study's config, add their grid and write it back;
without a lock the second write drops the first one's grid (and two new studies can both record
their own, incomparable, config). The lock is held across processes and machines, by whatever
the storage offers:

- SQLite: `flock` on a file beside the database (`<file>.lrsweep-lock`). Not on the database
  file itself: closing any other descriptor of that file drops SQLite's own POSIX locks in this
  process. The kernel releases a flock when its process dies, so a killed launcher leaves no lock.
- PostgreSQL: a session advisory lock (`pg_advisory_lock`) keyed by the study's name, on a
  connection of its own; the server releases it when that connection closes.
- A journal file: Optuna's `JournalFileOpenLock` on `<file>.lrsweep-lock` (safe on NFS; a lock
  left by a killed process is broken after its grace period).
- Anything else (an in-memory storage in tests): a lock of this process.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOCK_SUFFIX = ".lrsweep-lock"
JOURNAL_LOCK_GRACE_SECONDS = 60  # a journal lock file older than this was left by a dead process
_LOCAL = threading.Lock()


@contextlib.contextmanager
def study_lock(storage: Any, name: str) -> Iterator[None]:
    """Hold the lock of study `name` in `storage` (an Optuna storage) for the `with` block."""
    from sweep.store.journal import journal_path

    journal = journal_path(storage)
    engine = getattr(storage, "engine", None)
    if journal is not None:
        with _journal_lock(Path(str(journal) + LOCK_SUFFIX)):
            yield
    elif engine is not None and engine.url.get_backend_name() == "sqlite" and engine.url.database:
        with _file_lock(Path(str(engine.url.database) + LOCK_SUFFIX)):
            yield
    elif engine is not None and engine.url.get_backend_name() == "postgresql":
        with _advisory_lock(engine, name):
            yield
    else:
        with _LOCAL:
            yield


def sqlite_creation_lock(database: Path) -> contextlib.AbstractContextManager[None]:
    """Held while a new SQLite storage creates its tables: two processes creating them at once
    would both find them missing, and the second fail with "table ... already exists"."""
    return _file_lock(Path(str(database) + LOCK_SUFFIX))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # (not POSIX: SQLite's own write lock is all there is)
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _advisory_key(name: str) -> int:
    """A signed 64-bit key for the study's name (PostgreSQL's advisory lock space)."""
    digest = hashlib.sha1(f"lrsweep-study:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _advisory_lock(engine: Any, name: str) -> Iterator[None]:
    from sqlalchemy import text

    key = _advisory_key(name)
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            conn.commit()


@contextlib.contextmanager
def _journal_lock(path: Path) -> Iterator[None]:
    from optuna.storages.journal import JournalFileOpenLock

    lock = JournalFileOpenLock(str(path), grace_period=JOURNAL_LOCK_GRACE_SECONDS)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()
