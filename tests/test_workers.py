"""Parallel workers on SQLite, and independent workers on a real PostgreSQL server."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import ROOT, kill_process_tree, run_cli, start_cli

from sweep.core.redact import redact_url
from sweep.store import open_storage

pytestmark = pytest.mark.slow


def _complete_settings(study) -> list[str]:
    return [
        str(sorted(t.user_attrs["setting"].items()))
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
    ]


def test_four_workers_on_sqlite_finish_48_trials_without_lock_errors(tmp_path):
    lrs = ",".join(f"{0.01 * (i + 1):.2f}" for i in range(12))
    args = [
        "model.hidden_size=4",
        "model.layers=1",
        "epochs=1",
        "seeds=1",
        f"grid.lr=[{lrs}]",
        "grid.clip=[null,1.0]",
        "grid.batch_size=[512,1024]",
        "workers=4",
        "study.name=many",
        f"results_dir={tmp_path}",
    ]
    p = run_cli("run", *args, timeout=900)
    assert p.returncode == 0, p.stderr
    assert "locked" not in p.stderr.lower() and "Traceback" not in p.stderr
    study = optuna.load_study(study_name="many", storage=f"sqlite:///{tmp_path / 'lrsweep.db'}")
    settings = _complete_settings(study)
    assert len(settings) == 48 and len(set(settings)) == 48  # every setting completed once
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(pd.read_csv(tmp_path / "many" / "summary.csv")) == 48


def _worker(url: str, name: str, host: str, results: Path, extra: list[str]):
    return start_cli(
        "worker",
        f"study.storage={url}",
        f"study.name={name}",
        f"results_dir={results}",
        *extra,
        cwd=ROOT,
        env={"LRSWEEP_HOST": host},
    )


@pytest.mark.postgres
def test_two_independent_workers_on_postgres_survive_one_killed_mid_trial(tmp_path, postgres_url):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    # 30 epochs: a trial lasts a few seconds, so one of host-a's is seen running for 1 s (and is
    # still running when the kill lands) even when host-b is slow to start.
    grid = [
        "model.hidden_size=16",
        "model.layers=1",
        "epochs=30",
        "seeds=1",
        "grid.lr=[0.05,0.2]",
        "grid.clip=[null,1.0]",
        "grid.batch_size=[64]",
        "workers=1",
        "checkpoint_every=1",
        "study.heartbeat_seconds=1",
        "study.grace_seconds=4",
    ]
    a = _worker(postgres_url, name, "host-a", tmp_path / "a", grid)
    b = _worker(postgres_url, name, "host-b", tmp_path / "b", grid)
    # lrsweep's own opening: on an empty database the workers are creating the tables right now
    storage = open_storage(postgres_url)

    def running_on_a():
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            return []
        return [
            t
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t.user_attrs.get("worker", {}).get("host") == "host-a"
        ]

    end, first_seen, victim = time.monotonic() + 180, {}, None
    while victim is None:  # a trial of host-a that has been running for a few epochs, still running
        assert time.monotonic() < end and a.poll() is None, a.communicate()
        for t in running_on_a():
            first_seen.setdefault(t.number, time.monotonic())
            if time.monotonic() - first_seen[t.number] >= 1.0:
                victim = t.number
        time.sleep(0.1)
    kill_process_tree(a)
    out, err = b.communicate(timeout=600)
    assert b.returncode == 0, err
    study = optuna.load_study(study_name=name, storage=storage)
    settings = _complete_settings(study)
    assert len(settings) == 4 and len(set(settings)) == 4  # every setting exactly once
    failed = [
        t
        for t in study.trials
        if t.state == optuna.trial.TrialState.FAIL and not t.user_attrs.get("discarded")
    ]
    assert [t.number for t in failed] == [victim]  # only the killed worker's trial was reclaimed
    assert all(
        t.user_attrs["worker"]["host"] == "host-b"
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
        and t.number > victim
        and t.system_attrs.get("failed_trial") == victim
    )
    # The report is rebuilt from PostgreSQL alone, and never shows the password.
    p = run_cli(
        "report",
        f"study.storage={postgres_url}",
        f"study.name={name}",
        f"results_dir={tmp_path / 'r'}",
    )
    assert p.returncode == 0, p.stderr
    runs = pd.read_csv(tmp_path / "r" / name / "runs.csv")
    assert len(runs) == 4 and not runs.duplicated(subset=["lr", "clip", "batch_size", "seed"]).any()
    password = postgres_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    for text in (out, err, p.stdout, p.stderr):
        assert password not in text
    for path in (tmp_path / "r").rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    st = run_cli("status", f"study.storage={postgres_url}")
    assert st.returncode == 0 and password not in st.stdout + st.stderr
    assert redact_url(postgres_url) in st.stdout and name in st.stdout


def test_redact_url_hides_passwords_only():
    assert (
        redact_url("postgresql://user:secret@host:5432/db") == "postgresql://user:***@host:5432/db"
    )
    assert redact_url("postgresql://user@host/db") == "postgresql://user@host/db"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


# ----------------------------------------------------------------------------- how workers start


def test_cpu_workers_are_forked_only_where_that_is_as_safe_as_a_fresh_interpreter(monkeypatch):
    import threading

    from sweep.core.errors import UserError
    from sweep.launch.children import ENV_START, start_method

    monkeypatch.delenv(ENV_START, raising=False)
    if threading.active_count() == 1:  # (a test runner with threads of its own cannot fork safely)
        assert start_method("cpu") == "fork"
    assert start_method("cuda:0") == "exec"  # CUDA cannot be used in a child forked from its parent
    assert (
        start_method("cpu", trained_here=True) == "exec"
    )  # the range test ran the thread pools here
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert start_method("cpu") == "exec"  # another thread could hold a lock the child waits on
    finally:
        release.set()
        other.join()
    monkeypatch.setenv(ENV_START, "exec")
    assert start_method("cpu") == "exec"
    monkeypatch.setenv(ENV_START, "fork")
    assert start_method("cuda:1") == "exec"  # asking for fork does not make it safe
    monkeypatch.setenv(ENV_START, "sometimes")
    with pytest.raises(
        UserError, match=r"^LRSWEEP_WORKER_START='sometimes': not a way to start workers; unset it"
    ):
        start_method("cpu")


def test_a_dismissed_forked_worker_exits_while_its_sibling_still_waits_for_its_config():
    # Each forked worker holds only its own pipe: the first one's end of input reaches it even
    # though the second was forked while the first's pipe was open.
    from sweep.launch.children import dismiss, spawn

    first, second = spawn(0, "cpu", 1, "fork"), spawn(1, "cpu", 1, "fork")
    try:
        dismiss(first)
        assert first.wait(timeout=60) == 0
        assert second.poll() is None
        dismiss(second)
        assert second.wait(timeout=60) == 0
    finally:
        for child in (first, second):
            child.kill()
            child.wait(timeout=10)
