"""Checkpoints of running trials: every seed's model/optimizer/RNG state and curves so far.

One file per (setting, seeds) under results/<study>/checkpoints/, so that a trial queued again
after its worker died finds the checkpoint its predecessor wrote. Files are written to a
temporary name and renamed (a kill during the write leaves the previous checkpoint intact),
loaded with `torch.load(..., weights_only=True)` and deleted when the trial completes.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sweep.core.files import atomic_write
from sweep.core.setting import Setting

FORMAT = 1


class Checkpointer:
    """Saves every `every` epochs or `minutes` minutes (whichever comes first; 0 turns one off)."""

    def __init__(
        self,
        folder: Path,
        setting: dict[str, Any],
        seeds: list[int],
        fingerprint: str,
        every: int,
        minutes: float,
    ) -> None:
        key = Setting(setting).key + "|" + ",".join(map(str, seeds)) + "|" + fingerprint
        self.key = key
        self.path = Path(folder) / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".pt")
        self.every = every
        self.seconds = minutes * 60.0
        self.last_save = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # unreadable: start this trial from epoch 0 rather than fail it
            print(
                f"warning: ignoring unreadable checkpoint {self.path} ({type(e).__name__})",
                file=sys.stderr,
            )
            return None
        if (
            not isinstance(data, dict)
            or data.get("format") != FORMAT
            or data.get("key") != self.key
        ):
            return None
        return data["state"]

    def due(self, epoch: int) -> bool:
        by_epoch = self.every > 0 and epoch % self.every == 0
        by_time = self.seconds > 0 and time.monotonic() - self.last_save >= self.seconds
        return by_epoch or by_time

    def maybe_save(
        self, epoch: int, state: Callable[[], dict[str, Any]], force: bool = False
    ) -> None:
        if not (force or self.due(epoch)):
            return
        payload = {"format": FORMAT, "key": self.key, "epoch": epoch, "state": state()}
        atomic_write(self.path, lambda p: torch.save(payload, p))
        self.last_save = time.monotonic()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def clear_all(folder: Path) -> None:
    """Delete every checkpoint (and unfinished temporary file) in `folder`: called when the study
    has nothing left to run, so that one written by a worker killed between storing its results
    and deleting its checkpoint does not outlive the sweep. The folders a user's training kept
    per setting (its own checkpoints, finished runs of a trial) go too."""
    import shutil

    folder = Path(folder)
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file() and (path.suffix == ".pt" or ".tmp" in path.name):
                path.unlink(missing_ok=True)
            elif path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
