"""Writing result files safely: write to a temporary file in the same folder, then rename.

A kill or a full disk during a write leaves the previous good file in place, never a truncated
one (rename is atomic on POSIX file systems).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then move the result to `path` atomically."""
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
    return path


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))


def check_writable(folder: Path) -> None:
    """Raise UserError when results cannot be written under `folder` (checked before training)."""
    from sweep.errors import UserError

    folder = Path(folder)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"results_dir: {folder} is not writable (checked {probe}); pick another results_dir=PATH")
