"""Checkpoints, kill -9 / Ctrl-C and resume, grid changes: the study survives interruptions."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from conftest import ROOT, kill_process_tree, run_cli, start_cli

from sweep.config import config_fingerprint, load_config
from sweep.tasks import build_task
from sweep.training import StopRequested, train_setting
from sweep.training.checkpoints import Checkpointer

VOLATILE = ["seconds", "trial"]  # wall time and trial numbers differ between runs by nature


def test_checkpoint_resume_gives_identical_curves(tmp_path):
    cfg = load_config(["model.hidden_size=16", "model.dropout=0.2", "epochs=5"])
    task = build_task(cfg.task)
    setting = {"lr": 0.3, "clip": 1.0, "batch_size": 64}
    seeds = [0, 1]
    reference = train_setting(task, cfg, setting, seeds, torch.device("cpu"))

    ckpt = Checkpointer(tmp_path, setting, seeds, config_fingerprint(cfg), every=1, minutes=0)
    epochs_seen = []

    def stop_after_two():
        epochs_seen.append(1)
        return len(epochs_seen) >= 2

    with pytest.raises(StopRequested):
        train_setting(
            task, cfg, setting, seeds, torch.device("cpu"), ckpt, should_stop=stop_after_two
        )
    assert ckpt.path.exists()
    state = torch.load(ckpt.path, weights_only=True)  # plain tensors and containers only
    assert state["epoch"] == 2
    resumed = train_setting(
        task,
        cfg,
        setting,
        seeds,
        torch.device("cpu"),
        Checkpointer(tmp_path, setting, seeds, config_fingerprint(cfg), 1, 0),
    )
    for a, b in zip(reference, resumed):
        assert a.curves == b.curves and a.steps == b.steps


def test_checkpoint_of_another_setting_is_not_used(tmp_path):
    cfg = load_config(["model.hidden_size=8", "epochs=2"])
    a = Checkpointer(
        tmp_path, {"lr": 0.1, "clip": None, "batch_size": 64}, [0], config_fingerprint(cfg), 1, 0
    )
    b = Checkpointer(
        tmp_path, {"lr": 0.2, "clip": None, "batch_size": 64}, [0], config_fingerprint(cfg), 1, 0
    )
    a.maybe_save(1, lambda: {"seeds": []}, force=True)
    assert a.load() == {"seeds": []} and b.load() is None
    a.path.write_bytes(b"garbage")  # unreadable checkpoint: start from epoch 0, do not crash
    assert a.load() is None


# ----------------------------------------------------------------------------- process level

SWEEP = [
    "model.hidden_size=16",
    "model.layers=1",
    "epochs=6",
    "seeds=2",
    "grid.lr=[0.05,0.2,0.8]",
    "grid.clip=[null,1.0]",
    "grid.batch_size=[128]",
    "workers=2",
    "checkpoint_every=1",
    "study.name=k",
]


def _start(results: Path, *extra: str, env: dict | None = None):
    """The sweep, started (Popen-like). A fault hook on PYTHONPATH (`env`) is a sitecustomize,
    which only an interpreter's start-up loads: then a real `python -m sweep`."""
    return start_cli(
        "run", *SWEEP, f"results_dir={results}", *extra, cwd=ROOT, env=env, real=env is not None
    )


def _states(results: Path, strict: bool = False) -> dict[str, int]:
    """Trials per state. While waiting for a moment, a storage not yet readable (not created, or
    locked for a moment) counts as no trials; `strict` (an assertion about the states) reads it
    for certain: it retries a locked read for a while and raises rather than answer {}."""
    db = results / "lrsweep.db"
    end = time.monotonic() + (30 if strict else 0)
    while True:
        try:
            if not db.exists():
                raise sqlite3.OperationalError(f"{db} does not exist")
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                rows = con.execute("SELECT state, count(*) FROM trials GROUP BY state").fetchall()
            finally:
                con.close()
            return {state: n for state, n in rows}
        except sqlite3.Error:
            if not strict:
                return {}
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def _wait_for(predicate, proc: subprocess.Popen | None = None, timeout: float = 180.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"sweep exited ({proc.returncode}) before the moment to interrupt it:\n{out}\n{err}"
            )
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture(scope="session")
def reference_runs(tmp_path_factory):  # session: its tests share one xdist worker (their group)
    results = tmp_path_factory.mktemp("reference")
    p = run_cli("run", *SWEEP, f"results_dir={results}")
    assert p.returncode == 0, p.stderr
    return pd.read_csv(results / "k" / "runs.csv").drop(columns=VOLATILE)


def _assert_complete_exactly_once(results: Path, reference: pd.DataFrame) -> None:
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{results / 'lrsweep.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    keys = [str(sorted(t.user_attrs["setting"].items())) for t in complete]
    assert len(keys) == len(set(keys)) == 6  # every setting completed exactly once
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    runs = pd.read_csv(results / "k" / "runs.csv").drop(columns=VOLATILE)
    pd.testing.assert_frame_equal(runs, reference)  # value by value
    assert not list((results / "k" / "checkpoints").glob("*.pt"))  # deleted on completion


def _during_trial(results: Path) -> bool:
    return _states(results).get("RUNNING", 0) >= 1 and any(
        (results / "k" / "checkpoints").glob("*.pt")
    )


def _written_since(results: Path, t: float) -> bool:
    """A checkpoint written after time t (files vanish as trials finish: a race is not one)."""
    for f in (results / "k" / "checkpoints").glob("*.pt"):
        try:
            if f.stat().st_mtime > t:
                return True
        except FileNotFoundError:
            pass
    return False


def _between_trials(results: Path) -> bool:
    return _states(results).get("COMPLETE", 0) >= 1


def _during_checkpoint_write(results: Path) -> bool:
    return any((results / "k" / "checkpoints").glob(".*.tmp*")) or any(
        (results / "k" / "checkpoints").glob("*.tmp*")
    )


SLOW_CHECKPOINT_RENAME = """
# Test-only fault injection, loaded by Python at start-up (sitecustomize): every rename of a
# finished checkpoint file waits a second, so that a kill can land between write and rename.
import os, time
_replace = os.replace
def _slow_replace(src, dst, *args, **kwargs):
    if str(dst).endswith(".pt") and "checkpoints" in str(dst):
        time.sleep(1.0)
    return _replace(src, dst, *args, **kwargs)
os.replace = _slow_replace
"""


def _slow_checkpoint_env(tmp_path: Path) -> dict:
    hook = tmp_path / "fault-hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_CHECKPOINT_RENAME)
    return {
        "PYTHONPATH": os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])
    }


def _kill_at(results: Path, predicate, env: dict | None = None) -> None:
    """Start the sweep (the same command each time), kill -9 its process tree at the moment."""
    proc = _start(results, env=env)
    _wait_for(lambda: predicate(results), proc)
    kill_process_tree(proc)
    states = _states(results, strict=True)
    assert states and states.get("COMPLETE", 0) < 6  # really interrupted


def _died(results: Path) -> list:
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{results / 'lrsweep.db'}")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert all(
        re.fullmatch(
            r"its worker process \(pid \d+( or \d+)* on .+\) died",
            t.user_attrs.get("fail_reason", ""),
        )
        for t in failed
    ), [t.user_attrs.get("fail_reason") for t in failed]
    return failed


@pytest.mark.slow
@pytest.mark.xdist_group("resume-reference")  # one worker trains the reference
def test_kill9_between_trials_then_during_a_trial_then_the_same_command_completes_identically(
    tmp_path, reference_runs
):
    # One study, killed twice (once per moment, each rerun being the same command), then finished.
    _kill_at(tmp_path, _between_trials)
    restarted = time.time()  # a trial of the rerun is under way: it wrote a checkpoint since
    _kill_at(tmp_path, lambda r: _during_trial(r) and _written_since(r, restarted))
    p = run_cli("run", *SWEEP, f"results_dir={tmp_path}")  # the same command
    assert p.returncode == 0, p.stderr
    _assert_complete_exactly_once(tmp_path, reference_runs)
    assert _died(tmp_path)  # the orphaned trials of the kill during a trial were reclaimed at once


@pytest.mark.slow
@pytest.mark.xdist_group("resume-reference")  # one worker trains the reference
def test_kill9_during_a_checkpoint_write_then_the_same_command_completes_identically(
    tmp_path, reference_runs
):
    _kill_at(tmp_path, _during_checkpoint_write, env=_slow_checkpoint_env(tmp_path))
    p = run_cli("run", *SWEEP, f"results_dir={tmp_path}")
    assert p.returncode == 0, p.stderr
    _assert_complete_exactly_once(tmp_path, reference_runs)
    assert _died(tmp_path)


def _stop_with(results: Path, sig: int) -> None:
    proc = _start(results)
    _wait_for(lambda: _during_trial(results), proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped with" in err and "run the same command to resume" in err
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{results / 'lrsweep.db'}")
    released = [
        t for t in study.trials if t.user_attrs.get("fail_reason", "").startswith("released")
    ]
    assert released and not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert list((results / "k" / "checkpoints").glob("*.pt"))  # released trials left checkpoints


@pytest.mark.slow
@pytest.mark.xdist_group("resume-reference")  # one worker trains the reference
def test_ctrl_c_then_sigterm_checkpoint_release_and_the_same_command_resumes(
    tmp_path, reference_runs
):
    # SIGINT (Ctrl-C), then SIGTERM on the resumed sweep (the same command), then it finishes.
    _stop_with(tmp_path, signal.SIGINT)
    _stop_with(tmp_path, signal.SIGTERM)
    p = run_cli("run", *SWEEP, f"results_dir={tmp_path}")
    assert p.returncode == 0, p.stderr
    _assert_complete_exactly_once(tmp_path, reference_runs)


def test_checkpoint_left_by_a_kill_after_storing_is_deleted_when_the_sweep_is_done(tmp_path):
    # A worker killed between storing a trial's results and deleting its checkpoint leaves the
    # file behind; its trial is complete, so no worker ever loads it again. The next run of the
    # same command (nothing left to train) must remove it, and leave other files alone.
    base = [
        "model.hidden_size=8",
        "model.layers=1",
        "epochs=1",
        "seeds=1",
        "grid.lr=[0.1]",
        "grid.clip=[null]",
        "grid.batch_size=[256]",
        "workers=1",
        f"results_dir={tmp_path}",
        "study.name=c",
    ]
    assert run_cli("run", *base).returncode == 0
    folder = tmp_path / "c" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    left = [folder / "0d4563b986b4322aea32.pt", folder / ".0d4563b986b4322aea32.pt.abc.tmp"]
    for path in left:
        path.write_bytes(b"left by a killed worker")
    keep = folder / "notes.txt"
    keep.write_text("a user's own file")
    p = run_cli("run", *base)
    assert p.returncode == 0, p.stderr
    assert not [path for path in left if path.exists()]
    assert keep.exists()


@pytest.mark.slow
def test_incomparable_change_is_refused_without_touching_the_storage(tmp_path):
    base = [
        "model.hidden_size=8",
        "model.layers=1",
        "epochs=1",
        "seeds=1",
        "grid.lr=[0.1]",
        "grid.clip=[null]",
        "grid.batch_size=[256]",
        "workers=1",
        f"results_dir={tmp_path}",
        "study.name=c",
    ]
    assert run_cli("run", *base).returncode == 0
    db = tmp_path / "lrsweep.db"
    before = db.read_bytes()
    for change, key in [
        ("model.hidden_size=16", "model.hidden_size"),
        ("epochs=2", "epochs"),
        ("optimizer=adam", "optimizer.name"),
        ("model=gru", "model.name"),
    ]:
        p = run_cli("run", *base, change)
        assert p.returncode == 2, p.stderr
        assert key in p.stderr and "study.name=" in p.stderr and "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    assert db.read_bytes() == before
