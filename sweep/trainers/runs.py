"""The folders of one (setting, seed) of a user's training, and the runs of a trial already done.

Usage::

    paths = RunPaths.of(study_dir, setting, seed)
    paths.run_dir          # results/<study>/runs/<setting>/seed-3/: the run's log, stdout, stderr
    paths.checkpoint_dir   # results/<study>/checkpoints/<setting>/seed-3/: kept until the trial is done
    paths.done_file        # the finished run's record, so that a trial retried after a kill does
                           # not train its finished seeds again

A setting's folder name is readable and unique: `lr0.1-clip1-bs32-<hash>` (the hash tells apart
settings whose labels round alike and extra axes).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.core.files import write_text
from sweep.core.records import RunRecord, encode_record, record_from_stored
from sweep.core.setting import Setting, value_label

RUNS = "runs"
CHECKPOINTS = "checkpoints"


def setting_folder(setting: Mapping[str, Any]) -> str:
    """`lr0.1-clip1-bs32-1a2b3c4d`: the setting's base axes in words, then a hash of all axes."""
    s = Setting(setting)
    words = f"lr{value_label(s.get('lr'))}-clip{value_label(s.get('clip'))}-bs{value_label(s.get('batch_size'))}"
    words = re.sub(r"[^A-Za-z0-9.+-]", "_", words)
    return f"{words}-{hashlib.sha1(s.key.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class RunPaths:
    run_dir: Path
    checkpoint_dir: Path

    @classmethod
    def of(cls, study_dir: Path, setting: Mapping[str, Any], seed: int) -> RunPaths:
        folder = setting_folder(setting)
        return cls(
            run_dir=Path(study_dir) / RUNS / folder / f"seed-{int(seed)}",
            checkpoint_dir=Path(study_dir) / CHECKPOINTS / folder / f"seed-{int(seed)}",
        )

    @property
    def done_file(self) -> Path:
        return (
            self.checkpoint_dir.parent
            / f"seed-{self.checkpoint_dir.name.split('-', 1)[1]}.done.json"
        )

    def prepare(self) -> bool:
        """Create both folders; True when the checkpoint folder already holds something (the
        run may resume from it), False for a fresh start."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumable = self.checkpoint_dir.is_dir() and any(self.checkpoint_dir.iterdir())
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return resumable

    def save_done(self, record: RunRecord) -> None:
        """Keep a finished run's record until its whole trial is stored."""
        write_text(self.done_file, json.dumps(encode_record(record)))

    def load_done(self) -> RunRecord | None:
        try:
            return record_from_stored(json.loads(self.done_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def clear(self) -> None:
        """The trial is stored: its checkpoints and kept records go (the run's log stays)."""
        self.done_file.unlink(missing_ok=True)
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        try:
            self.checkpoint_dir.parent.rmdir()  # the setting's folder, once its last seed is cleared
        except OSError:
            pass
