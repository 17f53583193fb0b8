"""A first start that fails on the user's mistake leaves the storage as it found it.

Some mistakes show only once a run has started: a training script whose log holds neither an
accuracy nor a loss, a loss that never changes, `trainer.metric=acc` on a log without an
accuracy. By then `sweep run` has created the study (and perhaps the SQLite or journal file) and
queued its work. When the workers stop on such a one-line error and the study was created by this
very command and holds no result, the study is deleted again (and a storage file this command
created is removed), so that the fixed command starts afresh under the same study name; a study
that existed before, or that holds a result, is never touched. The refused run's folder (its log,
stdout.log, stderr.log) is kept under results_dir, where the error points.

Usage (by the launcher)::

    before = FirstStart.look(cfg)          # before the study is created
    ...
    before.undo(cfg)                        # after a worker's one-line user error
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.store.journal import journal_file
from sweep.store.storage import open_storage
from sweep.store.studies import study_names


def _local_file(url: str) -> Path | None:
    """The file a local storage URL keeps its data in (SQLite or a journal), else None."""
    journal = journal_file(url)
    if journal is not None:
        return Path(journal)
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


@dataclass(frozen=True)
class FirstStart:
    """What existed before this command: the study, and the storage file (local storages)."""

    study_existed: bool
    file: Path | None  # the storage file this command would create (None: it existed, or a server)

    @classmethod
    def look(cls, cfg: Any) -> FirstStart:
        url = cfg.storage_url()
        path = _local_file(url)
        if path is not None and not path.exists():
            return cls(study_existed=False, file=path)
        try:
            existed = cfg.study.name in study_names(open_storage(url, create=False))
        except Exception:  # unreachable or unreadable: told by `prepare`; assume it exists
            existed = True
        return cls(study_existed=existed, file=None)

    def undo(self, cfg: Any) -> bool:
        """Delete the study this command created, when it holds no result and nothing runs in
        it (and the storage file this command created, when no other study is in it). Returns
        whether anything was undone."""
        if self.study_existed:
            return False
        import optuna
        from optuna.trial import TrialState

        url = cfg.storage_url()
        storage = open_storage(url, create=False)
        if cfg.study.name not in study_names(storage):
            return False
        study = optuna.load_study(study_name=cfg.study.name, storage=storage)
        states = {t.state for t in study.get_trials(deepcopy=False)}
        if TrialState.COMPLETE in states or TrialState.RUNNING in states:
            return False  # a result is stored, or another worker (elsewhere) is at work
        optuna.delete_study(study_name=cfg.study.name, storage=storage)
        if self.file is not None and not study_names(storage):
            _close(storage)
            for suffix in ("", "-wal", "-shm", "-journal", ".lock", ".lrsweep-lock"):
                Path(str(self.file) + suffix).unlink(missing_ok=True)
        _remove_empty_folders(Path(cfg.study_dir) / "checkpoints")
        return True


def _remove_empty_folders(root: Path) -> None:
    """Remove `root` and the folders under it when they hold no file (the run's checkpoint
    folders a refused first run leaves behind)."""
    if not root.is_dir() or any(p.is_file() for p in root.rglob("*")):
        return
    for folder in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        folder.rmdir()
    root.rmdir()


def _close(storage: Any) -> None:
    """Release a storage's connections before its file is removed."""
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None:
        engine.dispose()
