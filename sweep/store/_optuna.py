"""Every use of Optuna's private attributes, in one place.

lrsweep drives Optuna's storage directly (an atomic WAITING -> RUNNING claim, user attributes
written while a trial runs, failing a trial on behalf of a dead worker), which needs the
storage, study id and trial id behind Optuna's public `Study` and `FrozenTrial`. Optuna has no
public accessor for them; if a release renames one, this module is the only one to change.
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
