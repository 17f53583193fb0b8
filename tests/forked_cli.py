"""The real `sweep` CLI, each call in a fresh process forked from one that has imported it already.

`python -m sweep ...` pays 1-4 s per call for the interpreter and its imports (torch, optuna,
hydra); a table of 150 bad inputs paid that 150 times. A `ForkedCli` starts one server process
that imports `sweep.cli` and the libraries every command loads, composes a config and opens a
storage once (Hydra's and SQLAlchemy's one-time costs: a bad input's call took 0.55 s of CPU
without this and about 0.3 s with it, a tiny sweep's 3.4 s and 2.0-2.4 s), then forks a child
per call:
the child takes the call's working folder, environment and PYTHONPATH, sends stdout/stderr to
files, runs `sweep.cli.execute(argv)`, closes every database connection (the last SQLite one folds
the write-ahead log back, as a real `sweep` process's exit does) and exits. Each call is
still its own process (its own exit status, no state shared with other calls), with the same
code path as the console script. Calls may overlap: `start` returns a Popen-like handle at once
(the kill and resume tests interrupt a sweep mid-trial, with a signal or kill -9), and the
server reaps each call and writes its exit status to a file. A real `python -m sweep run` costs
about 5 s of CPU before its first trial; a started call, about 0.3 s.

Usage::

    cli = ForkedCli()
    p = cli.run(["run", "grid.lr=[-1]"], cwd=tmp_path, env={"PYTHONPATH": "..."})  # CompletedProcess-like
    proc = cli.start(["run", "epochs=40"], cwd=tmp_path)   # Popen-like: poll, wait, send_signal
    cli.close()
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sweep.launch.children import ForkedWorker

SERVER = r"""
import importlib, json, os, sys, traceback
import sweep.cli, sweep.commands, sweep.config, sweep.store, sweep.launch.launcher, sweep.report.write  # noqa
import torch, optuna  # noqa: the libraries every command loads
import sweep.launch.worker; sweep.launch.worker.warm_up()  # what each launcher would do before forking its workers
# What every call's process would pay on its first config and its first storage, paid once here:
# Hydra's import and first composition (its plugin scan), SQLAlchemy's and Alembic's first
# storage (imports, compiled statements); each call still composes and opens its own.
import shutil, tempfile
from sweep.config import load_config; load_config([])
from sweep.store import open_storage
_warm = tempfile.mkdtemp(prefix="forked-cli-warm-")
for _ in range(2):  # a new file, then an existing one
    open_storage(f"sqlite:///{_warm}/warm.db").engine.dispose()
shutil.rmtree(_warm)
import gc, weakref
from sqlalchemy import event
from sqlalchemy.engine import Engine
ENGINES = []
@event.listens_for(Engine, "engine_connect")
def _remember(connection):  # every engine a call opens, to close its connections at the end
    ENGINES.append(weakref.ref(connection.engine))
gc.freeze()  # what is loaded now stays: a child's collections walk only what the call made
import select, time
CALLS = {}  # pid of each call under way -> the file its exit status goes to


def reap():  # the exit status of every finished call, to its file (atomically: the client polls it)
    while CALLS:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        path = CALLS.pop(pid, None)
        if path is not None:
            with open(path + ".tmp", "w") as f:
                f.write(str(os.waitstatus_to_exitcode(status)))
            os.replace(path + ".tmp", path)


sys.stdout.write("ready\n"); sys.stdout.flush()
pending, closed = b"", False
while not closed or CALLS:
    ready = select.select([0], [], [], 0.02)[0] if not closed else time.sleep(0.02)
    reap()
    if not ready:
        continue
    chunk = os.read(0, 65536)
    closed = not chunk
    pending += chunk
    while b"\n" in pending:
        line, pending = pending.split(b"\n", 1)
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)  # its own process group: a timeout ends the call and its workers
            code = 1
            try:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)  # never the server's requests
                os.chdir(req["cwd"])
                if req.get("full_env"):
                    os.environ.clear()
                for key, value in req["env"].items():
                    os.environ[key] = value
                for folder in reversed([p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]):
                    sys.path.insert(0, folder)
                sys.path.insert(0, os.getcwd())  # as `python -m sweep` puts its working folder first
                importlib.invalidate_caches()
                if req["env"].get("PYTHONDONTWRITEBYTECODE"):
                    sys.dont_write_bytecode = True
                out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(out, 1); os.dup2(err, 2)
                sys.argv = ["sweep", *req["argv"]]
                code = sweep.cli.execute(req["argv"])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # what the interpreter would print, and its exit status
                traceback.print_exc()
                code = 1
            finally:
                # What a normal exit does that matters here: every database connection is closed (the
                # last SQLite one folds the write-ahead log back into the file) and the output flushed.
                # The rest of the interpreter's shutdown (a second per call with torch loaded) is skipped.
                try:
                    for ref in ENGINES:
                        if ref() is not None:
                            ref().dispose()
                    gc.collect()
                    sys.stdout.flush(); sys.stderr.flush()
                finally:
                    os._exit(code if isinstance(code, int) else 1)
        CALLS[pid] = req["code"]
        sys.stdout.write(json.dumps({"pid": pid}) + "\n"); sys.stdout.flush()
"""


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


class ForkedCli:
    def __init__(self, cwd: Path | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="forked-cli-"))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            cwd=cwd,
        )
        self._buffer = b""
        assert self._line(None) == "ready"
        self.calls = 0

    def _line(self, timeout: float | None) -> str | None:
        """The server's next line, or None when none came within `timeout` seconds (unbuffered:
        a line read ahead can never hide behind a select)."""
        import os
        import select
        import time

        end = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = None if end is None else max(0.0, end - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the forked CLI server exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def start(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        full_env: bool = False,
    ) -> ForkedProcess:
        """Start one call and return at once: a Popen-like handle (poll, wait, send_signal,
        kill, communicate) of a process forked from the server, in a process group of its own.
        `env`: variables set on top of the server's environment, or (`full_env`) the call's
        whole environment."""
        self.calls += 1
        stem = self.folder / str(self.calls)
        request = {
            "argv": list(argv),
            "cwd": str(cwd),
            "env": dict(env or {}),
            "full_env": full_env,
            "stdout": f"{stem}.out",
            "stderr": f"{stem}.err",
            "code": f"{stem}.code",
        }
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        pid = json.loads(self._line(None))["pid"]
        return ForkedProcess(["sweep", *argv], pid, stem)

    def run(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        full_env: bool = False,
        timeout: float | None = None,
    ) -> Completed:
        """One call, to its end. Past `timeout` seconds the call's process group is killed
        and subprocess.TimeoutExpired raised, as subprocess.run does."""
        call = self.start(argv, cwd, env, full_env)
        try:
            out, err = call.communicate(timeout)
        except subprocess.TimeoutExpired:
            call.kill_group()
            call.wait()
            raise subprocess.TimeoutExpired(call.args, timeout or 0, *call.outputs()) from None
        return Completed(call.returncode, out, err)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


class ForkedProcess(ForkedWorker):
    """A call started by `ForkedCli.start`: what the tests use of subprocess.Popen. The server
    (not this process) reaps it and writes its exit status (-N for signal N, as Popen) to
    `<stem>.code`, so only `poll` differs from the launcher's `ForkedWorker` (wait, send_signal
    and kill are its); stdout and stderr are the files `<stem>.out` and `<stem>.err`."""

    def __init__(self, args: list[str], pid: int, stem: Path) -> None:
        super().__init__(pid, stdin=None)
        self.args, self._stem = args, stem

    def poll(self) -> int | None:
        code = self._stem.with_suffix(".code")
        if self.returncode is None and code.exists():
            self.returncode = int(code.read_text())
        return self.returncode

    def outputs(self) -> tuple[str, str]:
        return tuple(  # type: ignore[return-value]
            self._stem.with_suffix(s).read_text(errors="replace")
            if self._stem.with_suffix(s).exists()
            else ""
            for s in (".out", ".err")
        )

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self.outputs()

    def terminate(self) -> None:
        import signal

        self.send_signal(signal.SIGTERM)

    def kill_group(self) -> None:
        """SIGKILL the call and every process of its group (its workers)."""
        import os
        import signal

        if self.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
