"""The status line of a sweep (its `StudyCounts`), shown as a live bar or as periodic log lines.

On a terminal (stderr is a TTY) one line is redrawn in place; otherwise a line is printed when
settings finish (at most every few seconds) and at least once a minute, so logs stay readable.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from sweep.store.counts import StudyCounts


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StatusLine:
    """Renders the study's counts: `update()` while the sweep runs, `finish()` once at the end."""

    def __init__(self, stream: TextIO = sys.stderr, log_every: float = 60.0) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = time.monotonic()
        self.first_done: int | None = None
        self.last_line = 0.0
        self.last_done = -1
        self.log_every = log_every

    def line(self, snap: StudyCounts) -> str:
        elapsed = time.monotonic() - self.start
        if self.first_done is None:
            self.first_done = snap.done
        finished_here = snap.done - self.first_done
        remaining = snap.total - snap.done
        eta = "?" if finished_here <= 0 else _clock(elapsed / finished_here * remaining)
        width = 24
        filled = int(width * snap.done / max(1, snap.total))
        bar = "#" * filled + "." * (width - filled)
        running = f" ({'; '.join(snap.running_epochs[:3])})" if snap.running_epochs else ""
        crashed = f", {snap.crashed_runs} crashed" if snap.crashed_runs else ""
        return (
            f"[{bar}] {snap.done}/{snap.total} settings done, {snap.running} running{running}, "
            f"{snap.collapsed_runs}/{snap.complete_runs} runs collapsed{crashed}, "
            f"elapsed {_clock(elapsed)}, ETA {eta if remaining else '0:00'}"
        )

    def update(self, snap: StudyCounts) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + self.line(snap) + "\033[K")
            self.stream.flush()
            return
        changed = snap.done != self.last_done and now - self.last_line >= 5.0
        if changed or now - self.last_line >= self.log_every:
            print(self.line(snap), file=self.stream, flush=True)
            self.last_line, self.last_done = now, snap.done

    def finish(self, snap: StudyCounts) -> None:
        if self.tty:
            self.stream.write("\r" + self.line(snap) + "\033[K\n")
        elif snap.done != self.last_done:
            print(self.line(snap), file=self.stream)
        self.stream.flush()


class Ticker:
    """Calls `tick` every `interval` seconds in a thread while a block of work runs in this one
    (a training function run in-process: the progress line keeps coming while it trains).
    A failing tick is skipped: progress is only a view."""

    def __init__(self, tick: Callable[[], Any], interval: float = 1.0) -> None:
        self.tick, self.interval = tick, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lrsweep-progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                pass

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
