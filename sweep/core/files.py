"""Writing result files safely: write to a temporary file in the same folder, then rename.

A kill or a full disk during a write leaves the previous good file in place, never a truncated
one (rename is atomic on POSIX file systems).
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

# A temporary file this old was left by a writer that was killed (a live one finishes in seconds).
STALE_TMP_SECONDS = 3600.0


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then move the result to `path` atomically.

    Any error (a full disk, Ctrl-C) removes the temporary file; the temporary file of a writer
    that was killed outright is removed by the next successful write of the same file, once it
    is `STALE_TMP_SECONDS` old.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _remove_stale_tmp(path)
    return path


def _remove_stale_tmp(path: Path) -> None:
    now = time.time()
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if now - old.stat().st_mtime > STALE_TMP_SECONDS:
                old.unlink()
        except OSError:  # another process removed it first
            pass


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))


def check_writable(folder: Path) -> None:
    """Raise UserError when results cannot be written under `folder` (checked before training)."""
    from sweep.core.errors import UserError

    folder = Path(folder)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(
            f"results_dir: cannot create {folder}: {probe} is a file, not a folder; "
            f"pick another results_dir=PATH"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(
            f"results_dir: {folder} is not writable (no write permission on {probe}); "
            f"pick another results_dir=PATH"
        )
