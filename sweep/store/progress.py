"""How far a study has come: settings done, running, queued and failed, runs collapsed.

Read by the live progress of `sweep run` and by `sweep status` (no torch, a few queries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweep.config import Config
from sweep.core.setting import Setting
from sweep.store.queue import stored_seeds


@dataclass
class Snapshot:
    total: int = 0  # settings in this run's grid
    done: int = 0  # settings whose seeds are all stored
    running: int = 0  # RUNNING trials
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


def snapshot(study: Any, cfg: Config) -> Snapshot:
    """Count the study's progress over the settings of `cfg.grid` (runs of seeds 0..seeds-1)."""
    return count_progress(study, cfg.grid.settings(), cfg.seeds)


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


def count_progress(study: Any, settings: list[dict[str, Any]], n_seeds: int) -> Snapshot:
    """Progress over `settings` x seeds 0..n_seeds-1 (what a grid asks of the study)."""
    from optuna.trial import TrialState

    wanted = {Setting(s).key for s in settings}
    seeds = set(range(n_seeds))
    have: dict[str, set[int]] = {}
    crashed: set[tuple[str, int]] = set()
    progress: list[str] = []
    errors: set[str] = set()
    snap = Snapshot(total=len(wanted))
    last = 0.0
    for t in study.get_trials(deepcopy=False):
        key = Setting(t.user_attrs.get("setting", {})).key
        stamp = t.datetime_complete or t.datetime_start
        if stamp is not None:
            last = max(last, stamp.timestamp())
        if t.state == TrialState.RUNNING:
            snap.running += 1
            if isinstance(t.user_attrs.get("progress"), dict):
                p = t.user_attrs["progress"]
                seed = f"seed {p['seed']} " if p.get("seed") is not None else ""
                progress.append(f"{seed}epoch {p.get('epoch')}")
        elif t.state == TrialState.WAITING:
            snap.waiting += 1
        elif t.state == TrialState.FAIL and t.user_attrs.get("error") and key in wanted:
            errors.add(key)
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
    return snap
