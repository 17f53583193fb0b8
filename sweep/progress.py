"""Progress of a sweep: a snapshot of the study, shown as a live bar or as periodic log lines.

On a terminal (stderr is a TTY) one line is redrawn in place; otherwise a line is printed when
settings finish (at most every few seconds) and at least once a minute, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Optional, TextIO

from sweep.config import Config
from sweep.study import setting_key


@dataclass
class Snapshot:
    total: int = 0  # settings in this run's grid
    done: int = 0  # settings whose seeds are all stored
    running: int = 0  # RUNNING trials
    waiting: int = 0  # WAITING trials
    failed_settings: int = 0  # settings with an error and not done
    complete_runs: int = 0  # stored runs (setting x seed) of this grid
    collapsed_runs: int = 0
    last_activity: Optional[float] = None


def snapshot(study: Any, cfg: Config) -> Snapshot:
    """Count the study's progress over the settings of `cfg.grid` (runs of seeds 0..seeds-1)."""
    return count_progress(study, cfg.grid.settings(), cfg.seeds)


def stored_grid(study: Any) -> tuple[list[dict[str, Any]], int]:
    """The settings and seed count recorded in the study (the union of every run's grid)."""
    import itertools

    from sweep.study import ATTR_CONFIG

    config = study.user_attrs.get(ATTR_CONFIG, {})
    grid = config.get("grid", {})
    settings = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else []
    return settings, int(config.get("seeds", 0))


def count_progress(study: Any, settings: list[dict[str, Any]], n_seeds: int) -> Snapshot:
    """Progress over `settings` x seeds 0..n_seeds-1 (what a grid asks of the study)."""
    from optuna.trial import TrialState

    wanted = {setting_key(s) for s in settings}
    seeds = set(range(n_seeds))
    have: dict[str, set[int]] = {}
    errors: set[str] = set()
    snap = Snapshot(total=len(wanted))
    last = 0.0
    for t in study.get_trials(deepcopy=False):
        key = setting_key(t.user_attrs.get("setting", {}))
        stamp = t.datetime_complete or t.datetime_start
        if stamp is not None:
            last = max(last, stamp.timestamp())
        if t.state == TrialState.RUNNING:
            snap.running += 1
        elif t.state == TrialState.WAITING:
            snap.waiting += 1
        elif t.state == TrialState.FAIL and t.user_attrs.get("error") and key in wanted:
            errors.add(key)
        elif t.state == TrialState.COMPLETE and key in wanted:
            new = set(t.user_attrs.get("seeds", [])) & seeds
            new -= have.get(key, set())
            have.setdefault(key, set()).update(new)
            snap.complete_runs += len(new)
            modes = t.user_attrs.get("n_collapsed", 0)
            snap.collapsed_runs += int(modes) if len(new) == len(t.user_attrs.get("seeds", [])) else 0
    snap.done = sum(1 for k in wanted if seeds <= have.get(k, set()))
    snap.failed_settings = len({k for k in errors if not seeds <= have.get(k, set())})
    snap.last_activity = last or None
    return snap


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Renders snapshots: `update()` while the sweep runs, `finish()` once at the end."""

    def __init__(self, total: int, workers: int, stream: TextIO = sys.stderr, log_every: float = 60.0) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = time.monotonic()
        self.first_done: Optional[int] = None
        self.last_line = 0.0
        self.last_done = -1
        self.log_every = log_every
        self.total = total

    def line(self, snap: Snapshot) -> str:
        elapsed = time.monotonic() - self.start
        if self.first_done is None:
            self.first_done = snap.done
        finished_here = snap.done - self.first_done
        remaining = snap.total - snap.done
        eta = "?" if finished_here <= 0 else _clock(elapsed / finished_here * remaining)
        width = 24
        filled = int(width * snap.done / max(1, snap.total))
        bar = "#" * filled + "." * (width - filled)
        return (
            f"[{bar}] {snap.done}/{snap.total} settings done, {snap.running} running, "
            f"{snap.collapsed_runs}/{snap.complete_runs} runs collapsed, "
            f"elapsed {_clock(elapsed)}, ETA {eta if remaining else '0:00'}"
        )

    def update(self, snap: Snapshot) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + self.line(snap) + "\033[K")
            self.stream.flush()
            return
        changed = snap.done != self.last_done and now - self.last_line >= 5.0
        if changed or now - self.last_line >= self.log_every:
            print(self.line(snap), file=self.stream, flush=True)
            self.last_line, self.last_done = now, snap.done

    def finish(self, snap: Snapshot) -> None:
        if self.tty:
            self.stream.write("\r" + self.line(snap) + "\033[K\n")
        elif snap.done != self.last_done:
            print(self.line(snap), file=self.stream)
        self.stream.flush()
