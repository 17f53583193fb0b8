"""The results of a trial: each seed's record and a readable summary, stored in the study.

Usage::

    store_results(study, trial, records, summary)     # a worker, when a setting is done
    load_study_runs(study)                            # (setting, decoded record, trial number)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sweep.core.records import RUN_PREFIX, decode_record, encode_record
from sweep.store._optuna import storage_of, trial_id


def store_results(study: Any, trial: Any, records: Sequence[Any], summary: dict[str, Any]) -> None:
    """Write each seed's record and the trial's summary, then complete it with its values."""
    storage = storage_of(study)
    for rec in records:
        storage.set_trial_user_attr(trial_id(trial), f"{RUN_PREFIX}{rec.seed}", encode_record(rec))
    for key, value in summary.items():
        storage.set_trial_user_attr(trial_id(trial), key, value)
    values = [summary["mean_best_acc"], summary["collapse_rate"]]
    if not math.isfinite(values[0]):  # calls from the loss: no accuracy (the loss is an attribute)
        values[0] = 0.0
    if not summary.get("n_runs", 1):  # every run crashed: kept as COMPLETE (the report shows them)
        values = [0.0, 0.0]
    assert all(math.isfinite(v) for v in values), values  # a NaN value would FAIL the trial
    study.tell(trial.number, values=values)


PROGRESS_SECONDS = 5.0  # a running trial's progress is written at most this often
_last_progress: dict[int, float] = {}


def record_progress(study: Any, trial: Any, seed: int | None, epoch: int) -> None:
    """Note on a running trial how far its current run is (`sweep status` and the live line read
    it); at most every PROGRESS_SECONDS per trial, and never failing the run."""
    import time

    if trial is None:
        return
    now = time.monotonic()
    if now - _last_progress.get(trial_id(trial), -PROGRESS_SECONDS) < PROGRESS_SECONDS:
        return
    _last_progress[trial_id(trial)] = now
    try:
        storage_of(study).set_trial_user_attr(
            trial_id(trial), "progress", {"seed": seed, "epoch": int(epoch)}
        )
    except Exception:  # a finished (reclaimed) trial or a storage hiccup: progress is only a hint
        pass


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
