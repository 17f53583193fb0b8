"""Workers that die: a setting that kills its worker every time (as an out-of-memory kill does)
is run again at most study.max_retries times, then given up with its reason, reported, and run
again only when asked (study.retry_failed=true); `sweep status` calls the trials of a killed
sweep stale, not running."""

from __future__ import annotations

import sqlite3
import textwrap
import time

import pandas as pd
import pytest
from conftest import kill_process_tree, run_cli, start_cli

pytestmark = pytest.mark.slow

# lr >= 1 kills the worker that runs it, with SIGKILL, as the kernel's OOM killer would.
KILLFIT = textwrap.dedent("""
    import os, signal, time

    def fit(setting, seed, epochs, report):
        if setting["lr"] >= 1:
            with open(os.environ["KILL_LOG"], "a") as f:
                f.write(f"{os.getpid()}\\n")
            os.kill(os.getpid(), signal.SIGKILL)
        if setting["lr"] < 0.05:  # the trial a test kills from outside
            time.sleep(600)
        for epoch in range(1, epochs + 1):
            report(epoch, val_acc=0.5 + 0.1 * epoch, val_loss=1.0 / epoch, train_loss=1.0 / epoch)
""")


def _args(tmp_path, *extra: str) -> list[str]:
    return [
        "trainer=function",
        "trainer._target_=killfit.fit",
        "trainer.n_val=100",
        "trainer.chance=0.1",
        "grid.clip=[null]",
        "grid.batch_size=[32]",
        "seeds=2",
        "epochs=2",
        "workers=1",
        "study.name=kills",
        f"results_dir={tmp_path / 'results'}",
        *extra,
    ]


def test_a_setting_that_kills_its_worker_is_given_up_after_max_retries(tmp_path):
    (tmp_path / "killfit.py").write_text(KILLFIT)
    log = tmp_path / "kills.log"
    env = {"KILL_LOG": str(log)}

    def sweep(*extra: str, command: str = "worker"):  # `sweep worker`: the same, no report
        args = _args(tmp_path, "grid.lr=[0.1,1.0]", "study.max_retries=1", *extra)
        return run_cli(command, *args, cwd=tmp_path, env=env)

    def kills() -> int:
        return len(log.read_text().split()) if log.exists() else 0

    first = sweep()  # killed once: the setting is left running, its worker dead
    assert first.returncode == 1 and kills() == 1, first.stderr[-3000:]
    second = sweep()  # taken back and run again (1 retry): killed again
    assert second.returncode == 1 and kills() == 2, second.stderr[-3000:]
    third = sweep(command="run")  # died more than study.max_retries=1 times: given up
    assert third.returncode == 1 and kills() == 2, third.stderr[-3000:]
    assert "1 setting(s) given up, not run again: lr=1" in third.stderr
    assert "its worker died 2 times" in third.stderr and "study.retry_failed=true" in third.stderr
    assert "Traceback" not in first.stderr + second.stderr + third.stderr

    runs = pd.read_csv(tmp_path / "results" / "kills" / "runs.csv")
    lost = runs[runs["lr"] == 1.0]
    assert list(lost["outcome"]) == ["crashed", "crashed"]
    assert lost["failure_reason"].str.contains("its worker died 2 times").all()
    assert "its worker died 2 times" in (tmp_path / "results" / "kills" / "report.html").read_text()
    status = run_cli("status", f"results_dir={tmp_path / 'results'}")
    header, row = status.stdout.splitlines()[1:3]
    table = dict(zip(header.split(), row.split()))
    assert table["failed"] == "1" and table["done"] == "1", status.stdout
    assert "kills: given up: lr=1" in status.stdout

    again = sweep()  # the same command does not run it again ...
    assert again.returncode == 1 and kills() == 2 and "0 worker(s)" in again.stdout
    asked = sweep("study.retry_failed=true")  # ... this does
    assert asked.returncode == 1 and kills() == 3, asked.stderr[-3000:]
    assert "1 done, 1 to run" in asked.stdout


def test_max_retries_is_three_unless_set():
    from sweep.config import load_config

    assert load_config([]).study.max_retries == 3
    assert load_config([]).study.retry_failed is False


def _running_trials(db) -> list:
    """The running trials that have a heartbeat, read from the SQLite file without Optuna: an
    Optuna storage opened while the sweep is still creating the file would race it to create
    the tables (and could break the sweep it watches)."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return []
    try:
        return con.execute(
            "SELECT t.trial_id FROM trials t JOIN trial_user_attributes a"
            " ON a.trial_id = t.trial_id WHERE t.state = 'RUNNING' AND a.key = 'heartbeat'"
        ).fetchall()
    except sqlite3.Error:  # not created yet, or locked for a moment
        return []
    finally:
        con.close()


def test_status_calls_the_trials_of_a_killed_sweep_stale(tmp_path):
    (tmp_path / "killfit.py").write_text(KILLFIT)
    args = _args(tmp_path, "grid.lr=[0.01]", "study.heartbeat_seconds=1", "study.grace_seconds=3")
    env = {"KILL_LOG": str(tmp_path / "kills.log"), "LRSWEEP_HOST": "elsewhere"}
    proc = start_cli("run", *args, cwd=tmp_path, env=env)
    db = tmp_path / "results" / "lrsweep.db"
    try:
        end = time.monotonic() + 120
        while not _running_trials(db) and time.monotonic() < end:
            time.sleep(0.2)
        assert _running_trials(db), "the sweep never started its trial"
        live = run_cli("status", f"results_dir={tmp_path / 'results'}")
        assert "stale" not in live.stdout, live.stdout  # its heartbeat is fresh
    finally:
        kill_process_tree(proc)  # the whole sweep, as a reboot would
    time.sleep(5)  # longer than study.grace_seconds
    p = run_cli("status", f"results_dir={tmp_path / 'results'}")
    assert p.returncode == 0, p.stderr
    header, row = p.stdout.splitlines()[1:3]
    assert "0 (1 stale)" in row, p.stdout
    assert "kills: 1 trial(s) stale (no heartbeat for" in p.stdout
