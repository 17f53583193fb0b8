"""The real `sweep` CLI, each call in a fresh process forked from one that has imported it already.

`python -m sweep ...` pays 1-4 s per call for the interpreter and its imports (torch, optuna,
hydra); a table of 150 bad inputs paid that 150 times. A `ForkedCli` starts one server process
that imports `sweep.cli` and the libraries every command loads, then forks a child per call:
the child takes the call's working folder, environment and PYTHONPATH, sends stdout/stderr to
files, runs `sweep.cli.run(argv)`, closes every database connection (the last SQLite one folds
the write-ahead log back, as a real `sweep` process's exit does) and exits. Each call is
still its own process (its own exit status, no state shared with other calls), with the same
code path as the console script.

Usage::

    cli = ForkedCli()
    p = cli.run(["run", "grid.lr=[-1]"], cwd=tmp_path, env={"PYTHONPATH": "..."})  # CompletedProcess-like
    cli.close()
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SERVER = r'''
import json, os, sys
import sweep.cli, sweep.commands, sweep.config, sweep.store, sweep.run.launcher, sweep.report.write  # noqa
import torch, optuna  # noqa: the libraries every command loads
import gc, weakref
from sqlalchemy import event
from sqlalchemy.engine import Engine
ENGINES = []
@event.listens_for(Engine, "engine_connect")
def _remember(connection):  # every engine a call opens, to close its connections at the end
    ENGINES.append(weakref.ref(connection.engine))
gc.freeze()  # what is loaded now stays: a child's collections walk only what the call made
sys.stdout.write("ready\n"); sys.stdout.flush()
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.chdir(req["cwd"])
        for key, value in req["env"].items():
            os.environ[key] = value
        for folder in reversed([p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]):
            sys.path.insert(0, folder)
        if req["env"].get("PYTHONDONTWRITEBYTECODE"):
            sys.dont_write_bytecode = True
        out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1); os.dup2(err, 2)
        sys.argv = ["sweep", *req["argv"]]
        code = sweep.cli.run(req["argv"])
        # What a normal exit does that matters here: every database connection is closed (the
        # last SQLite one folds the write-ahead log back into the file) and the output flushed.
        # The rest of the interpreter's shutdown (a second per call with torch loaded) is skipped.
        for ref in ENGINES:
            if ref() is not None:
                ref().dispose()
        gc.collect()
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n"); sys.stdout.flush()
'''


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


class ForkedCli:
    def __init__(self, cwd: Optional[Path] = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="forked-cli-"))
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=cwd)
        assert self.proc.stdout.readline().strip() == "ready"
        self.calls = 0

    def run(self, argv: list[str], cwd: Path, env: Optional[dict[str, str]] = None) -> Completed:
        self.calls += 1
        out, err = self.folder / f"{self.calls}.out", self.folder / f"{self.calls}.err"
        request = {"argv": list(argv), "cwd": str(cwd), "env": dict(env or {}), "stdout": str(out), "stderr": str(err)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        code = json.loads(self.proc.stdout.readline())["code"]
        return Completed(code, out.read_text(errors="replace"), err.read_text(errors="replace"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
