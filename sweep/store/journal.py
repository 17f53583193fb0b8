"""Journal-file storage (Optuna's JournalStorage on a shared filesystem): what lrsweep keeps of it.

Usage::

    journal_path(storage)     # the journal file behind a storage lrsweep opened, else None
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

# The file behind each JournalStorage lrsweep opened (Optuna keeps it in a private attribute).
_PATHS: weakref.WeakKeyDictionary[Any, Path] = weakref.WeakKeyDictionary()


def journal_path(storage: Any) -> Path | None:
    """The journal file of `storage`, when lrsweep opened it as a journal storage."""
    try:
        return _PATHS.get(storage)
    except TypeError:  # not weak-referenceable: not one of ours
        return None
