"""Storage calls that wait out SQLite's write lock (many workers on one database file)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


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
