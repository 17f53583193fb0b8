"""The results of a trial: each seed's record and a readable summary, stored in the study.

Usage::

    store_results(study, trial, records, summary)     # a worker, when a setting is done
    load_study_runs(study)                            # (setting, decoded record, trial number)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from sweep.core.records import RUN_PREFIX, decode_record, encode_record
from sweep.store._optuna import storage_of, trial_id
from sweep.store.retry import retry_locked


def store_results(study: Any, trial: Any, records: Sequence[Any], summary: dict[str, Any]) -> None:
    """Write each seed's record and the trial's summary, then complete it with its values."""
    storage = storage_of(study)
    for rec in records:
        retry_locked(lambda: storage.set_trial_user_attr(trial_id(trial), f"{RUN_PREFIX}{rec.seed}", encode_record(rec)))
    for key, value in summary.items():
        retry_locked(lambda: storage.set_trial_user_attr(trial_id(trial), key, value))
    values = [summary["mean_best_acc"], summary["collapse_rate"]]
    assert all(math.isfinite(v) for v in values), values  # a NaN value would FAIL the trial
    retry_locked(lambda: study.tell(trial.number, values=values))


def load_study_runs(study: Any) -> list[tuple[dict[str, Any], dict[str, Any], int]]:
    """(setting, decoded record, trial number) for every run of every COMPLETE trial."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        setting = t.user_attrs.get("setting")
        if setting is None:
            continue
        for key, value in t.user_attrs.items():
            if key.startswith(RUN_PREFIX):
                out.append((setting, decode_record(value), t.number))
    return out
