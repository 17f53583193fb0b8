"""The queue of work: one WAITING trial per (setting, seeds), claimed atomically by a worker.

Trials are queued as WAITING trials with fixed params (Optuna's own queue, the mechanism behind
`enqueue_trial`); a worker claims one with the storage's atomic WAITING -> RUNNING transition.

Why not `GridSampler`: it counts a FAIL trial as a visited grid point (a setting whose worker
was killed would never be run again) and hands RUNNING points out a second time once every point
has started (duplicates with several workers). A queue of fixed-param trials, claimed
atomically, gives each setting to exactly one worker; orphaned trials are failed and queued
again, and duplicates a concurrent launcher queued are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sweep.config import Config
from sweep.core.setting import Setting
from sweep.store._optuna import storage_of, study_id, trial_id


def _distributions(setting: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optuna params for a setting: numeric axes only, clip absent when there is no clipping."""
    from optuna.distributions import FloatDistribution, IntDistribution

    params: dict[str, Any] = {}
    dists: dict[str, Any] = {}
    for key, value in setting.items():
        if value is None or isinstance(value, (bool, str)):
            continue
        log = key in ("lr", "clip")
        if isinstance(value, int) and not log:
            params[key], dists[key] = value, IntDistribution(value, value)
        else:
            params[key], dists[key] = (
                float(value),
                FloatDistribution(float(value), float(value), log=log and value > 0),
            )
    return params, dists


GAVE_UP = "gave_up"  # user attr of a COMPLETE trial that stands for a setting given up: why


def covered_seeds(trials: Iterable[Any], retry_failed: bool = False) -> dict[str, set[int]]:
    """Seeds of each setting that are done, running or queued (FAIL trials cover nothing, nor do
    runs that crashed). The runs of a setting given up (its worker died more than
    study.max_retries times) are covered, so that they are not run again, unless `retry_failed`."""
    from optuna.trial import TrialState

    covered: dict[str, set[int]] = {}
    for t in trials:
        if (
            t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
            and "setting" in t.user_attrs
        ):
            given_up = t.user_attrs.get(GAVE_UP) and not retry_failed
            seeds = set(t.user_attrs.get("seeds", [])) if given_up else stored_seeds(t)
            covered.setdefault(Setting(t.user_attrs["setting"]).key, set()).update(seeds)
    return covered


def stored_seeds(trial: Any) -> set[int]:
    """The seeds a trial covers: all of them, but for a COMPLETE trial not the runs that crashed
    or timed out (a user's training), which the same command runs again."""
    return set(trial.user_attrs.get("seeds", [])) - set(trial.user_attrs.get("failed_seeds", []))


def plan_work(cfg: Config, trials: Iterable[Any]) -> list[tuple[dict[str, Any], list[int]]]:
    """(setting, seeds) still to queue so that every setting of the grid has seeds 0..seeds-1."""
    covered = covered_seeds(trials, cfg.study.retry_failed)
    work = []
    for setting in cfg.grid.settings():
        have = covered.get(Setting(setting).key, set())
        missing = [s for s in range(cfg.seeds) if s not in have]
        if missing:
            work.append((setting, missing))
    return work


def uncovered(
    work: Iterable[tuple[dict[str, Any], list[int]]],
    trials: Iterable[Any],
    retry_failed: bool = False,
) -> list[tuple[dict[str, Any], list[int]]]:
    """The part of `work` (setting, seeds) that no trial covers yet (for work beyond the grid's
    seeds 0..seeds-1: `sweep refine` adds seeds to single settings)."""
    covered = covered_seeds(trials, retry_failed)
    out = []
    for setting, seeds in work:
        missing = [s for s in seeds if s not in covered.get(Setting(setting).key, set())]
        if missing:
            out.append((setting, missing))
    return out


def enqueue(study: Any, work: Sequence[tuple[dict[str, Any], list[int]]]) -> int:
    """Queue one WAITING trial per (setting, seeds); then drop duplicates a concurrent launcher
    may have queued at the same moment (the lowest trial number wins)."""
    import optuna

    for setting, seeds in work:
        params, dists = _distributions(setting)
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=params,
            distributions=dists,
            user_attrs={"setting": setting, "seeds": list(seeds)},
        )
        study.add_trial(trial)
    if work:
        drop_duplicate_waiting(study)
    return len(work)


def drop_duplicate_waiting(study: Any) -> int:
    """Claim and discard WAITING trials whose (setting, seed) another trial already covers."""
    from optuna.trial import TrialState

    storage = storage_of(study)
    seen: set[tuple[str, int]] = set()
    dropped = 0
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if "setting" not in t.user_attrs or t.state not in (
            TrialState.COMPLETE,
            TrialState.RUNNING,
            TrialState.WAITING,
        ):
            continue
        keys = {(Setting(t.user_attrs["setting"]).key, s) for s in stored_seeds(t)}
        if t.state == TrialState.WAITING and keys and keys <= seen:
            if _claim(storage, trial_id(t)):
                storage.set_trial_user_attr(
                    trial_id(t), "discarded", "duplicate of an earlier trial"
                )
                storage.set_trial_state_values(trial_id(t), TrialState.FAIL)
                dropped += 1
            continue
        seen |= keys
    return dropped


def _claim(storage: Any, trial_id: int) -> bool:
    import optuna
    from optuna.trial import TrialState

    try:
        return bool(storage.set_trial_state_values(trial_id, TrialState.RUNNING))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _longest_first(trial: Any) -> tuple[float, int]:
    """Claim order: the most optimizer steps first (seeds / batch size), then queue order, so
    the last trials to finish are short ones and workers do not idle at the end of a sweep."""
    setting = trial.user_attrs.get("setting", {})
    batch = setting.get("batch_size") or 1
    return (-len(trial.user_attrs.get("seeds", [])) / float(batch), trial.number)


# User attr prefix: "claimant <host> <pid>" holds a worker that tried to claim the trial.
CLAIMANT = "claimant "


def claimant_key(worker: dict[str, Any]) -> str:
    return f"{CLAIMANT}{worker.get('host')} {worker.get('pid')}"


def claimants(trial: Any) -> list[dict[str, Any]]:
    """The workers that tried to claim the trial (`pop_trial(study, worker)`): one of them runs it."""
    return [v for k, v in trial.user_attrs.items() if k.startswith(CLAIMANT)]


def pop_trial(study: Any, worker: dict[str, Any] | None = None) -> Any | None:
    """Atomically claim a WAITING trial (WAITING -> RUNNING), longest first; None when none is left.

    `worker` (`this_worker()`) is marked on the trial as a claimant before the claim: a process
    killed between its claim and recording itself as the trial's worker (`claim_for`) is then
    still known, and the same command reclaims that trial at once instead of after the grace
    period. A claimant's own key, not the shared "worker": a worker that loses the race must
    not overwrite the winner's identity.
    """
    import optuna
    from optuna.trial import TrialState

    storage = storage_of(study)
    waiting = storage.get_all_trials(study_id(study), deepcopy=False, states=(TrialState.WAITING,))
    for t in sorted(waiting, key=_longest_first):
        if worker is not None:
            try:
                storage.set_trial_user_attr(trial_id(t), claimant_key(worker), worker)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # claimed and finished by another worker meanwhile
        if _claim(storage, trial_id(t)):
            return storage.get_trial(trial_id(t))
    return None


def requeue_trial(study: Any, trial: Any, died: bool = False) -> None:
    """Queue a fresh WAITING copy of a failed trial (same setting and seeds).

    Used for trials whose worker died (`died`: heartbeat stale, or its process is gone) and for
    trials a worker released when asked to stop; also Optuna's heartbeat-stale callback. The
    copies count the deaths of their worker: once it died more than study.max_retries times the
    setting is given up (`give_up`) instead of queued, or it would kill every worker it meets.
    """
    import optuna

    if "setting" not in trial.user_attrs or trial.user_attrs.get("discarded"):
        return
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    deaths = int(trial.system_attrs.get("deaths", 0)) + int(died)
    if died and deaths > max_retries(study):
        give_up(study, trial, deaths, history)
        return
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={
                "setting": trial.user_attrs["setting"],
                "seeds": trial.user_attrs.get("seeds", []),
            },
            system_attrs={"failed_trial": history[0], "retry_history": history, "deaths": deaths},
        )
    )


def max_retries(study: Any) -> int:
    """study.max_retries of the study's latest run (3 for a study that never recorded one)."""
    from sweep.store.studies import ATTR_CONFIG

    config = study.user_attrs.get(ATTR_CONFIG) or {}
    return int((config.get("study") or {}).get("max_retries", 3))


def give_up(study: Any, trial: Any, deaths: int, history: list[int]) -> None:
    """Record a setting whose worker died `deaths` times running it as done, every run
    `crashed` with the reason (runs.csv, the report's runs that did not finish, `sweep
    status`), so that no command runs it again unless study.retry_failed=true."""
    import optuna

    from sweep.core.records import RUN_PREFIX, RunRecord, encode_record

    last = trial.user_attrs.get("fail_reason") or "its worker stopped sending heartbeats"
    why = (
        f"its worker died {deaths} times while running it (last: {last}; killed for memory?); "
        f"given up after study.max_retries={deaths - 1}: study.retry_failed=true runs it again"
    )
    seeds = list(trial.user_attrs.get("seeds", []))
    records = {
        f"{RUN_PREFIX}{s}": encode_record(RunRecord(seed=s, failure="crashed", failure_reason=why))
        for s in seeds
    }
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE,
            values=[0.0, 0.0],
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={
                "setting": trial.user_attrs["setting"],
                "seeds": seeds,
                **records,
                "failed_seeds": seeds,
                "n_runs": 0,
                GAVE_UP: why,
            },
            system_attrs={"failed_trial": history[0], "retry_history": history, "deaths": deaths},
        )
    )


def fail_and_requeue(study: Any, trial: Any, reason: str, died: bool = False) -> bool:
    """Fail a RUNNING trial (noting why) and queue a fresh copy of it; False when it had
    finished meanwhile (its worker completed it, or another process reclaimed it first).
    `died`: its worker died (counted against study.max_retries), not asked to stop."""
    import optuna
    from optuna.trial import TrialState

    storage, tid = storage_of(study), trial_id(trial)
    try:
        storage.set_trial_user_attr(tid, "fail_reason", reason)
        if storage.set_trial_state_values(tid, TrialState.FAIL):
            requeue_trial(study, storage.get_trial(tid), died=died)
            return True
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
    return False


def mark_failed(study: Any, trial: Any, error: str) -> None:
    """A trial whose training raised an error: FAIL with the error noted, not queued again (the
    same command retries it: a failed setting is missing work)."""
    from optuna.trial import TrialState

    storage_of(study).set_trial_user_attr(trial_id(trial), "error", error)
    study.tell(trial.number, state=TrialState.FAIL)


def others_running(study: Any) -> bool:
    """Are trials RUNNING (on this machine or elsewhere)?"""
    from optuna.trial import TrialState

    return bool(
        storage_of(study).get_all_trials(
            study_id(study), deepcopy=False, states=(TrialState.RUNNING,)
        )
    )
