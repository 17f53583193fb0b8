"""The launcher's local worker processes: started early, handed their config, stopped on Ctrl-C.

Usage (by `sweep.launch.launcher`)::

    child = spawn(index, "cpu", threads=1)   # a worker, waiting while the study is prepared
    go(child, cfg, task_cache)               # ... then it starts claiming trials
    dismiss(child)                           # a worker that is not needed exits untouched
    with Stopper() as stopper: ...           # Ctrl-C: workers finish their epoch and release
    reap(children)                           # every worker waited for: no zombie is left

How a worker starts. A CPU worker on Linux is forked from the launcher, which has imported
torch, optuna and lrsweep already: it skips the 2-4 s of imports a fresh interpreter pays (per
worker, on a machine that is busy starting all of them). A fork is only as safe as the process
it copies, so every other case starts a fresh interpreter (`python -m sweep.launch.worker`): a GPU
worker (CUDA cannot be used in a forked child once the parent touched it), and whatever
`sweep.core.forking.fork_unsafe_reason` rules out (the one policy the report's figure pool
follows too): another platform, a launcher with other Python threads (a notebook's kernel: one
could hold a lock the child would wait on forever), one where CUDA was initialised, and a
launcher that trained already (`grid.lr=auto`'s range test: its thread pools ran).
`LRSWEEP_WORKER_START=exec` asks for a fresh interpreter always. Both start the same
`sweep.launch.worker.main`, with the same environment, threads and signals; the results are
identical (tests/test_reproducibility.py).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from sweep.config import Config
from sweep.core.errors import UserError
from sweep.core.forking import fork_unsafe_reason
from sweep.launch.worker import ENV_CONFIG, ENV_DEVICE, ENV_INDEX, ENV_PARENT, ENV_THREADS
from sweep.trainers.supervise import PR_SET_NAME, arm_parent_death_signal, prctl

ENV_START = "LRSWEEP_WORKER_START"  # "exec": every worker starts a fresh interpreter
PROCESS_NAME = b"lrsweep-worker"  # what `top` and `ps -o comm` show for a forked worker


def child_setup() -> None:
    """Runs in the child before exec (or right after the fork). The launcher owns Ctrl-C:
    children ignore SIGINT and stop on the SIGTERM it forwards. On Linux the child also gets
    SIGTERM when the launcher dies (even by SIGKILL), so it checkpoints and releases its trial
    instead of running unobserved; the death signal survives exec, so there is no window where
    it is not armed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    arm_parent_death_signal(signal.SIGTERM)


def start_method(device: str, trained_here: bool = False) -> str:
    """ "fork" or "exec": how a worker for `device` starts from this process (see the module's
    docstring). `trained_here`: this process has run training (its thread pools are warm)."""
    asked = os.environ.get(ENV_START, "").strip().lower()
    if asked not in ("", "auto", "fork", "exec"):
        raise UserError(
            f"{ENV_START}={asked!r}: not a way to start workers; unset it, or set it to exec "
            f"(a fresh interpreter per worker) or fork"
        )
    if asked == "exec" or device != "cpu" or "torch" not in sys.modules:
        return "exec"
    return "exec" if fork_unsafe_reason(trained_here) else "fork"


def spawn(
    index: int, device: str, threads: int, method: str = "exec"
) -> subprocess.Popen | ForkedWorker:
    """Start a worker process; it waits for `go` or `dismiss`. `method`: `start_method`'s answer."""
    env = {
        ENV_INDEX: str(index),
        ENV_DEVICE: device,
        ENV_THREADS: str(threads),
        ENV_PARENT: str(os.getpid()),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    if method == "fork":
        return _fork(env)
    full = {
        k: v for k, v in os.environ.items() if k != ENV_CONFIG
    }  # the config comes through stdin
    full.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "sweep.launch.worker"],
        env=full,
        stdin=subprocess.PIPE,
        text=True,
        preexec_fn=child_setup,
    )


class ForkedWorker:
    """A worker forked from this process: what the launcher uses of subprocess.Popen."""

    def __init__(self, pid: int, stdin: Any) -> None:
        self.pid = pid
        self.stdin = stdin
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: its status is lost
                self.returncode = 1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)  # -N for signal N, as Popen
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0)
            time.sleep(0.02)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_STDINS: list[Any] = []  # the write ends of the forked workers' stdin pipes, in this process


def _fork(env: dict[str, str]) -> ForkedWorker:
    from sweep.launch import worker

    worker.warm_up()  # here, once (a second call costs nothing), rather than in every worker
    _STDINS[:] = [f for f in _STDINS if not f.closed]
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the worker: it never returns from here
        code = 1
        try:
            # The launcher's objects (an open storage among them) are never used or finalised
            # here: no collection of what existed before the fork (a SQLite connection closed in
            # this process would drop the locks of this process's own connection).
            gc.freeze()
            os.close(write)
            null = os.open(os.devnull, os.O_WRONLY)
            for sibling in _STDINS:  # the earlier workers' pipes: each sees its own end of input
                if not sibling.closed:
                    os.dup2(null, sibling.fileno())
            child_setup()
            prctl(PR_SET_NAME, PROCESS_NAME)
            os.environ.pop(ENV_CONFIG, None)
            os.environ.update(env)
            if read != 0:  # fd 0 becomes the pipe, as a started interpreter's (its runs inherit it)
                os.dup2(read, 0)
                os.close(read)
            sys.stdin = open(0, closefd=False)
            sys.argv = [worker.__file__]
            worker.main()  # ends with os._exit
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(read)
    stdin = os.fdopen(write, "w")
    _STDINS.append(stdin)
    return ForkedWorker(pid, stdin)


def go(child: Any, cfg: Config, task_cache: Path) -> None:
    """Hand a waiting worker its config and the task data file: it starts claiming trials."""
    child.stdin.write(json.dumps({"config": cfg.to_dict(), "task_cache": str(task_cache)}) + "\n")
    child.stdin.close()


def dismiss(child: Any) -> None:
    """A worker that is not needed: end of input, and it exits without touching anything."""
    try:
        child.stdin.close()
    except OSError:
        pass


def stop_unused(children: list[Any]) -> None:
    """Workers that were never handed a config (preparing the study failed): they touched
    nothing, so they are stopped at once and waited for."""
    for child in children:
        dismiss(child)
        child.kill()
    reap(children)


def reap(children: list[Any], timeout: float = 30.0) -> None:
    """Wait for every child to exit (a dismissed worker exits as soon as it reads its end of
    input), so none is left a zombie in a long-lived process such as a notebook's kernel; one
    still running after `timeout` seconds is killed (it was told to stop, or touched nothing)."""
    end = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


class Stopper:
    """First SIGINT/SIGTERM: ask workers to stop after their epoch; second: kill them.

    A context manager: it installs its handlers on entering and gives the caller back its own on
    leaving (a notebook kernel or a script keeps its Ctrl-C). Signals reach only the main thread,
    so a sweep started from another thread installs nothing: its workers still stop when this
    process dies (their parent-death signal), and the caller's handlers are left alone."""

    def __init__(self) -> None:
        self.count = 0
        self.children: list[Any] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            # None: a handler set outside Python; the default is the closest we can give back.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1:
            print(
                "\nstopping: workers finish their current epoch, checkpoint and release their trials "
                "(press Ctrl-C again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
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
