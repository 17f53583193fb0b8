"""How far a study has come: settings done, running, queued and failed, runs collapsed.

Read by the live progress of `sweep run` and by `sweep status` (no torch, a few queries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweep.config import Config
from sweep.core.setting import Setting
from sweep.store.queue import GAVE_UP, stored_seeds


@dataclass
class StudyCounts:
    total: int = 0  # settings in this run's grid
    done: int = 0  # settings whose seeds are all stored
    running: int = 0  # RUNNING trials (the stale ones among them)
    waiting: int = 0  # WAITING trials
    failed_settings: int = 0  # settings with an error and not done
    complete_runs: int = 0  # stored runs (setting x seed) of this grid
    collapsed_runs: int = 0
    # runs of a user's training that crashed or timed out, not run again since
    crashed_runs: int = 0
    last_activity: float | None = None
    running_epochs: tuple[
        str, ...
    ] = ()  # "seed 2, epoch 7" per running trial that reports progress
    # settings given up (their worker died more than study.max_retries times), and why:
    # "lr=1, clip none, batch size 32: its worker died 4 times ..."
    gave_up: tuple[str, ...] = ()
    # RUNNING trials whose worker is gone (dead on this host, or no heartbeat for longer than
    # the grace period): "no heartbeat for 340 s" each; the next run or worker reclaims them
    stale: tuple[str, ...] = ()


def count_study(study: Any, cfg: Config) -> StudyCounts:
    """Count the study's progress over the settings of `cfg.grid` (runs of seeds 0..seeds-1)."""
    return count_settings(study, cfg.grid.settings(), cfg.seeds, cfg.study.grace_seconds)


def stored_grid(study: Any) -> tuple[list[dict[str, Any]], int]:
    """The settings and seed count recorded in the study (the union of every run's grid)."""
    import itertools

    from sweep.store.studies import ATTR_CONFIG

    config = study.user_attrs.get(ATTR_CONFIG, {})
    grid = config.get("grid", {})
    settings = (
        [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else []
    )
    return settings, int(config.get("seeds", 0))


def count_settings(
    study: Any, settings: list[dict[str, Any]], n_seeds: int, grace_seconds: float = 60
) -> StudyCounts:
    """Counts over `settings` x seeds 0..n_seeds-1 (what a grid asks of the study);
    `grace_seconds`: how old a heartbeat of another host's worker makes its trial stale."""
    from optuna.trial import TrialState

    from sweep.store.workers import heartbeat_age, worker_gone

    wanted = {Setting(s).key for s in settings}
    seeds = set(range(n_seeds))
    have: dict[str, set[int]] = {}
    crashed: set[tuple[str, int]] = set()
    progress: list[str] = []
    errors: set[str] = set()
    gave_up: dict[str, str] = {}
    active: set[str] = set()  # settings queued or running (a given-up one asked to run again)
    stale: list[str] = []
    snap = StudyCounts(total=len(wanted))
    last = 0.0
    for t in study.get_trials(deepcopy=False):
        key = Setting(t.user_attrs.get("setting", {})).key
        stamp = t.datetime_complete or t.datetime_start
        if stamp is not None:
            last = max(last, stamp.timestamp())
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            active.add(key)
        if t.state == TrialState.RUNNING:
            snap.running += 1
            if worker_gone(t, grace_seconds) is not None:
                stale.append(f"no heartbeat for {heartbeat_age(t) or 0:.0f} s")
            if isinstance(t.user_attrs.get("progress"), dict):
                p = t.user_attrs["progress"]
                seed = f"seed {p['seed']} " if p.get("seed") is not None else ""
                progress.append(f"{seed}epoch {p.get('epoch')}")
        elif t.state == TrialState.WAITING:
            snap.waiting += 1
        elif t.state == TrialState.FAIL and t.user_attrs.get("error") and key in wanted:
            errors.add(key)
        elif t.state == TrialState.COMPLETE and key in wanted and t.user_attrs.get(GAVE_UP):
            label = Setting(t.user_attrs["setting"]).label()
            gave_up[key] = f"{label}: {t.user_attrs[GAVE_UP]}"
        elif t.state == TrialState.COMPLETE and key in wanted:
            crashed |= {(key, s) for s in t.user_attrs.get("failed_seeds", []) if s in seeds}
            new = stored_seeds(t) & seeds
            new -= have.get(key, set())
            have.setdefault(key, set()).update(new)
            snap.complete_runs += len(new)
            modes = t.user_attrs.get("n_collapsed", 0)
            snap.collapsed_runs += int(modes) if len(new) == len(stored_seeds(t)) else 0
    snap.done = sum(1 for k in wanted if seeds <= have.get(k, set()))
    snap.crashed_runs = sum(1 for k, s in crashed if s not in have.get(k, set()))
    snap.running_epochs = tuple(progress)
    snap.failed_settings = len({k for k in errors if not seeds <= have.get(k, set())})
    snap.last_activity = last or None
    snap.gave_up = tuple(
        why for k, why in gave_up.items() if not seeds <= have.get(k, set()) and k not in active
    )
    snap.stale = tuple(stale)
    return snap
