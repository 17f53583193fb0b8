"""The supervisor of one run of a training command: the run's process group dies with it.

A worker starts it (by file path, `python -I supervise.py GRACE -- /bin/sh -c COMMAND`) as the
leader of a new session and process group, armed with a parent-death signal (Linux
PR_SET_PDEATHSIG): when the worker dies, even by SIGKILL, the supervisor gets SIGTERM. It runs the
command in its own process group, so everything the command starts (a shell, python, data-loader
processes) is in that group, and

- on SIGTERM, SIGINT or SIGHUP (the worker stops the run, or died) it sends SIGTERM to the whole
  group, waits up to GRACE seconds, then SIGKILLs the group;
- when the command exits, it kills whatever the command left running in the group, and exits
  with the command's status (128 + N when a signal N ended it).

The worker arms the parent-death signal in the child before exec (`arm_parent_death_signal`).

Standard library only, no lrsweep imports: it starts in a few milliseconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15


def prctl(option: int, value: object) -> None:
    """Linux's prctl(option, value) on this process; a no-op elsewhere, or where libc lacks it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value)
    except (OSError, AttributeError):
        pass


def arm_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (a no-op elsewhere)."""
    prctl(PR_SET_PDEATHSIG, sig)


def _others() -> list[int]:
    """The other processes of this process group (Linux: from /proc)."""
    me, pgid = os.getpid(), os.getpgid(0)
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit() and int(name) != me:
            try:
                if os.getpgid(int(name)) == pgid:
                    out.append(int(name))
            except (ProcessLookupError, PermissionError):
                continue
    return out


def _signal_others(sig: int) -> None:
    for pid in _others():
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _end_group(child: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the rest of the group, up to `grace` seconds for the command to exit, then
    SIGKILL to everything left."""
    _signal_others(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_others(signal.SIGKILL)
    child.poll()


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: supervise.py GRACE_SECONDS -- COMMAND...", file=sys.stderr)
        return 2
    grace = float(argv[0])
    command = argv[2:]
    parent = os.getppid()
    if parent == 1:  # the worker died before the parent-death signal was armed
        return 143
    stopping = {"signal": 0}

    def on_signal(signum: int, frame: object) -> None:
        stopping["signal"] = signum

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        child = subprocess.Popen(command)
    except OSError as e:
        print(f"lrsweep: cannot start {command!r}: {e}", file=sys.stderr)
        return 127
    while True:
        try:
            child.wait(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            pass
        if stopping["signal"]:
            _end_group(child, grace)
            return 128 + stopping["signal"]
    code = child.returncode
    # What the command left behind in its group (a background process it started) goes too.
    if _others():
        _signal_others(signal.SIGTERM)
        time.sleep(0.2)
        _signal_others(signal.SIGKILL)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
