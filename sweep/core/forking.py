"""When this process may fork a child that runs Python code (a worker, a figure-drawing pool).

Usage::

    why = fork_unsafe_reason()      # None: a fork is as safe as a fresh interpreter
    if why is None: ... fork ...    # else start a fresh interpreter, or do the work here

A fork copies the whole process but only the thread that called it. It is safe only where
nothing the child may need is held by another thread or tied to the parent:

- Linux only: macOS's system libraries are not fork-safe (Python's own default there is spawn),
  and other platforms have no fork.
- No other Python thread: one may hold a lock (the import lock, a logging handler's, the
  allocator's) that the child would wait on forever. A notebook's kernel always has threads,
  and so does a process that shows progress or records heartbeats from one.
- CUDA not initialised: a forked child cannot use the parent's CUDA context.
- `trained_here`: for a child that will train (a worker), not after this process ran training
  itself: torch's OpenMP thread pool is not fork-safe once it ran. A child that only draws
  figures does not touch it.

The launcher's workers (sweep.launch.children.start_method) and the report's figure pool
(sweep.report.figures.write_figures) both ask this one function. No torch import: torch counts
only when it is already imported.
"""

from __future__ import annotations

import sys
import threading


def fork_unsafe_reason(trained_here: bool = False) -> str | None:
    """Why a fork of this process would not be as safe as a fresh interpreter (None: it is)."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    if threading.active_count() != 1:
        names = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        return f"other threads run ({', '.join(names[:3])})"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA is initialised"
    if trained_here:
        return "this process trained (its thread pools ran)"
    return None
