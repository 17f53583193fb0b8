"""Every use of Optuna's private attributes, in one place.

lrsweep drives Optuna's storage directly (an atomic WAITING -> RUNNING claim, user attributes
written while a trial runs, failing a trial on behalf of a dead worker), which needs the
storage, study id and trial id behind Optuna's public `Study` and `FrozenTrial`. Optuna has no
public accessor for them; if a release renames one, this module is the only one to change.
It also imports Optuna first, quietly (`_import_optuna`).
"""

from __future__ import annotations

from typing import Any


def storage_of(study: Any) -> Any:
    """The study's storage (an optuna.storages.BaseStorage)."""
    return study._storage


def study_id(study: Any) -> int:
    return study._study_id


def trial_id(trial: Any) -> int:
    """The storage id of a FrozenTrial (its `number` counts within the study only)."""
    return trial._trial_id


def _import_optuna() -> None:
    """Import Optuna without the warning its import prints in every fresh Jupyter kernel that
    lacks ipywidgets: `import optuna` imports `optuna.progress_bar`, whose `tqdm.auto` looks for
    the notebook's widgets and warns "IProgress not found". lrsweep never shows Optuna's
    progress bar (it has its own progress line), so that warning is about nothing it uses."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import optuna  # noqa: F401


_import_optuna()  # every module that uses Optuna imports this package first
