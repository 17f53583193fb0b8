"""A lock on the SQLite file held by another process (BEGIN EXCLUSIVE, as an sqlite3 shell or a
database browser takes it): the sweep waits for it and goes on; a lock held past the busy
timeout ends the sweep with one line, not a traceback, and the results stored so far stay."""

from __future__ import annotations

import os
import signal
import textwrap

import optuna
import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

# The training function takes the lock itself, from a separate process, at its first call: the
# worker meets it when it stores that setting's results (and the launcher when it reads progress).
LOCKFIT = textwrap.dedent("""
    import os, subprocess, sys

    HOLD = (
        "import sqlite3, sys, time\\n"
        "con = sqlite3.connect(sys.argv[1], isolation_level=None)\\n"
        "con.execute('BEGIN EXCLUSIVE')\\n"
        "print('locked', flush=True)\\n"
        "time.sleep(float(sys.argv[2]))\\n"
        "con.execute('COMMIT')\\n"
    )

    def fit(setting, seed, epochs, report):
        folder = os.environ["LOCK_TEST_DIR"]
        flag = os.path.join(folder, "holder.pid")
        if not os.path.exists(flag):
            db = os.path.join(folder, "results", "lrsweep.db")
            hold = subprocess.Popen([sys.executable, "-c", HOLD, db, os.environ["LOCK_SECONDS"]],
                                    stdout=subprocess.PIPE, text=True, start_new_session=True)
            assert hold.stdout.readline().strip() == "locked"
            with open(flag, "w") as f:
                f.write(str(hold.pid))
        for epoch in range(1, epochs + 1):
            report(epoch, val_acc=0.5 + 0.1 * epoch, val_loss=1.0 / epoch, train_loss=1.0 / epoch)
""")


def _sweep(tmp_path, lock_seconds: float, timeout_seconds: float, wait: float):
    (tmp_path / "lockfit.py").write_text(LOCKFIT)
    env = {
        "LOCK_TEST_DIR": str(tmp_path),
        "LOCK_SECONDS": str(lock_seconds),
        "LRSWEEP_SQLITE_TIMEOUT": str(timeout_seconds),
    }
    try:
        return run_cli(
            "run",
            "trainer=function",
            "trainer._target_=lockfit.fit",
            "trainer.n_val=100",
            "trainer.chance=0.1",
            "grid.lr=[0.1,0.2]",
            "grid.clip=[null]",
            "grid.batch_size=[32]",
            "seeds=1",
            "epochs=2",
            "workers=1",
            "study.name=locked",
            f"results_dir={tmp_path / 'results'}",
            cwd=tmp_path,
            env=env,
            timeout=wait,
        )
    finally:
        pid = tmp_path / "holder.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _complete(tmp_path) -> int:
    study = optuna.load_study(
        study_name="locked", storage=f"sqlite:///{tmp_path / 'results' / 'lrsweep.db'}"
    )
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_a_worker_waits_for_a_lock_another_process_holds_then_proceeds(tmp_path):
    p = _sweep(tmp_path, lock_seconds=4, timeout_seconds=30, wait=240)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "holder.pid").exists()  # the lock was taken during the sweep
    assert "Traceback" not in p.stderr and "locked" not in p.stderr
    assert _complete(tmp_path) == 2


def test_a_lock_held_past_the_busy_timeout_ends_the_sweep_with_one_line(tmp_path):
    p = _sweep(tmp_path, lock_seconds=120, timeout_seconds=2, wait=90)
    assert p.returncode == 2, p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "stayed locked by another process for 2 s" in errors[0], p.stderr
    assert "LRSWEEP_SQLITE_TIMEOUT" in errors[0]
