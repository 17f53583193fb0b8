"""The study storage: the single source of truth of a sweep (Optuna, SQLite or PostgreSQL).

Modules: `storage` (URLs, opening, SQLite locking), `studies` (create/load, comparability,
stored config), `queue` (the work queue: enqueue, claim, requeue), `workers` (who runs a trial,
heartbeats, dead workers), `results` (run records in and out), `progress` (how far a study is),
`_optuna` (every use of Optuna's private attributes; it imports Optuna first, quietly).
"""

from sweep.store import _optuna  # noqa: F401  (before any module of this package imports Optuna)
from sweep.store.counts import StudyCounts, count_settings, count_study, stored_grid
from sweep.store.queue import (
    covered_seeds,
    drop_duplicate_waiting,
    enqueue,
    fail_and_requeue,
    mark_failed,
    others_running,
    plan_work,
    pop_trial,
    requeue_trial,
)
from sweep.store.results import load_study_runs, store_results
from sweep.store.storage import check_sqlite_file, check_storage_url, open_storage
from sweep.store.studies import (
    ATTR_COMPARABLE,
    ATTR_CONFIG,
    ATTR_TASK,
    DIRECTIONS,
    check_comparable,
    load_study,
    open_or_create_study,
    study_names,
)
from sweep.store.workers import (
    Heartbeat,
    claim_for,
    hostname,
    reclaim_orphans,
    this_worker,
    worker_alive,
)

__all__ = [
    "StudyCounts",
    "count_settings",
    "count_study",
    "stored_grid",
    "covered_seeds",
    "drop_duplicate_waiting",
    "enqueue",
    "fail_and_requeue",
    "mark_failed",
    "others_running",
    "plan_work",
    "pop_trial",
    "requeue_trial",
    "load_study_runs",
    "store_results",
    "check_sqlite_file",
    "check_storage_url",
    "open_storage",
    "ATTR_COMPARABLE",
    "ATTR_CONFIG",
    "ATTR_TASK",
    "DIRECTIONS",
    "check_comparable",
    "load_study",
    "open_or_create_study",
    "study_names",
    "Heartbeat",
    "claim_for",
    "hostname",
    "reclaim_orphans",
    "this_worker",
    "worker_alive",
]
