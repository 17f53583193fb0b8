"""A journal file as the study storage: Optuna's JournalStorage for a shared filesystem without a
database server (Slurm or LSF clusters; SQLite breaks on NFS, Optuna issues #815 and #6036).

Usage::

    path = journal_file("journal:///shared/sweeps/study.log")   # Path, or None for other URLs
    check_journal(path, create=True)                            # no write: the file is usable
    storage = open_journal(path)                                 # an Optuna JournalStorage
    journal_path(storage)                                        # its file, for lrsweep's locks

Every write appends a line to the file under Optuna's `JournalFileOpenLock` (a lock file made
with O_EXCL, safe on NFSv3 and later). Optuna's heartbeats do not work with a journal; lrsweep's
own do (a trial attribute, sweep.store.workers), so a killed worker's trial is reclaimed on it as
on a database: at once on its own host, after study.grace_seconds from any other.
"""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path
from typing import Any

from sweep.core.errors import UserError

SCHEME = "journal://"
LOCK_GRACE_SECONDS = 30  # a lock file older than this was left by a killed process

# The file behind each JournalStorage lrsweep opened (Optuna keeps it in a private attribute).
_PATHS: weakref.WeakKeyDictionary[Any, Path] = weakref.WeakKeyDictionary()


def journal_file(url: str) -> Path | None:
    """The file of a `journal://PATH` URL (`journal:///shared/x.log` is /shared/x.log), else None."""
    if not url.lower().startswith(SCHEME):
        return None
    return Path(url[len(SCHEME) :])


def check_journal(path: Path, create: bool = True) -> None:
    """Refuse a journal file that cannot be used, without writing anything."""
    url = f"{SCHEME}{path}"
    if not str(path) or str(path) in (".", "/"):
        raise UserError(
            f"study.storage: {url!r} names no file; use journal:///shared/folder/study.log "
            f"(the path after journal://)"
        )
    if path.is_dir():
        raise UserError(
            f"study.storage: {path} is a folder, not a journal file; point study.storage at a "
            f"file, e.g. journal://{path / 'lrsweep.log'}"
        )
    if not path.exists():
        if not create:
            raise UserError(
                f"study.storage: {path} does not exist; run `sweep run` first or point "
                f"study.storage at an existing storage"
            )
        if not path.parent.is_dir():
            raise UserError(
                f"study.storage: folder {path.parent} does not exist; create it or pick another path"
            )
        if not os.access(path.parent, os.W_OK):
            raise UserError(
                f"study.storage: folder {path.parent} is not writable; pick another study.storage"
            )
        return
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except OSError as e:
        raise UserError(
            f"study.storage: cannot read {path} ({e.strerror}); check its permissions"
        ) from None
    if first.strip() and not _is_journal_line(first):
        raise UserError(
            f"study.storage: {path} is not an Optuna journal file (its first line is not a "
            f"journal entry); move it aside or point study.storage at another file"
        )


def _is_journal_line(line: bytes) -> bool:
    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(entry, dict) and "op_code" in entry


def open_journal(path: Path) -> Any:
    """An Optuna JournalStorage on `path`, writing under its NFS-safe lock."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    lock = JournalFileOpenLock(str(path), grace_period=LOCK_GRACE_SECONDS)
    try:
        storage = JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    except OSError as e:
        raise UserError(
            f"study.storage: cannot open {path} ({e.strerror or type(e).__name__}); check the "
            f"path and its permissions"
        ) from None
    _PATHS[storage] = path
    return storage


def journal_path(storage: Any) -> Path | None:
    """The journal file of `storage`, when lrsweep opened it as a journal storage."""
    try:
        return _PATHS.get(storage)
    except TypeError:  # not weak-referenceable: not one of ours
        return None
