"""The launcher's local worker processes: started early, handed their config, stopped on Ctrl-C.

Usage (by `sweep.run.launcher`)::

    child = spawn(index, "cpu", threads=1)   # imports torch & co. while the study is prepared
    go(child, cfg, task_cache)               # ... then it starts claiming trials
    dismiss(child)                           # a worker that is not needed exits untouched
    stopper = Stopper(); stopper.install()   # Ctrl-C: workers finish their epoch and release
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from sweep.config import Config
from sweep.run.worker import ENV_CONFIG, ENV_DEVICE, ENV_INDEX, ENV_PARENT, ENV_THREADS
from sweep.trainers.supervise import arm_parent_death_signal


def child_setup() -> None:
    """Runs in the child before exec. The launcher owns Ctrl-C: children ignore SIGINT and stop
    on the SIGTERM it forwards. On Linux the child also gets SIGTERM when the launcher dies
    (even by SIGKILL), so it checkpoints and releases its trial instead of running unobserved;
    the death signal survives exec, so there is no window where it is not armed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    arm_parent_death_signal(signal.SIGTERM)


def spawn(index: int, device: str, threads: int) -> subprocess.Popen:
    """Start a worker process; it imports its libraries, then waits for `_go` or `_dismiss`."""
    env = dict(os.environ)
    env.pop(ENV_CONFIG, None)  # the config comes through stdin once the study is ready
    env[ENV_INDEX] = str(index)
    env[ENV_DEVICE] = device
    env[ENV_THREADS] = str(threads)
    env[ENV_PARENT] = str(os.getpid())
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    return subprocess.Popen(
        [sys.executable, "-m", "sweep.run.worker"], env=env, stdin=subprocess.PIPE, text=True,
        preexec_fn=child_setup,
    )


def go(child: subprocess.Popen, cfg: Config, task_cache: Path) -> None:
    """Hand a waiting worker its config and the task data file: it starts claiming trials."""
    child.stdin.write(json.dumps({"config": cfg.to_dict(), "task_cache": str(task_cache)}) + "\n")
    child.stdin.close()


def dismiss(child: subprocess.Popen) -> None:
    """A worker that is not needed: end of input, and it exits without touching anything."""
    try:
        child.stdin.close()
    except OSError:
        pass


class Stopper:
    """First SIGINT/SIGTERM: ask workers to stop after their epoch; second: kill them."""

    def __init__(self) -> None:
        self.count = 0
        self.children: list[subprocess.Popen] = []

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1:
            print("\nstopping: workers finish their current epoch, checkpoint and release their trials "
                  "(press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
            for c in self.children:
                if c.poll() is None:
                    c.send_signal(signal.SIGTERM)
        else:
            for c in self.children:
                if c.poll() is None:
                    c.kill()

    def stop_quietly(self) -> None:
        """Ask every running worker to release its trial and exit (another worker hit an error)."""
        for c in self.children:
            if c.poll() is None:
                c.send_signal(signal.SIGTERM)
