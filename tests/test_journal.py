"""A journal file as the study storage (journal:///path: Optuna's JournalStorage with its
NFS-safe lock), for clusters with a shared filesystem and no database server: two "hosts" share
one file, a killed worker's trial is reclaimed by another host once its heartbeat is stale, and
every (setting, seed) is done exactly once; `sweep status` and `sweep report` read it."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import kill_process_tree, run_cli, start_cli

from sweep.core.errors import UserError
from sweep.store.storage import check_storage_url, open_storage

pytestmark = pytest.mark.slow

JFIT = textwrap.dedent("""
    import time

    def fit(setting, seed, epochs, report):
        for epoch in range(1, epochs + 1):
            time.sleep(0.4)
            report(epoch, val_acc=min(0.9, 0.3 + 0.2 * epoch), val_loss=1.0 / epoch,
                   train_loss=1.0 / epoch)
""")
LRS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "trainer=function",
        "trainer._target_=jfit.fit",
        "trainer.n_val=100",
        "trainer.chance=0.1",
        f"grid.lr=[{','.join(map(str, LRS))}]",
        "grid.clip=[null]",
        "grid.batch_size=[32]",
        "seeds=2",
        "epochs=2",
        "study.name=shared",
        f"study.storage=journal://{tmp_path / 'sweeps' / 'study.log'}",
        *extra,
    ]


def _start(tmp_path: Path, command: str, host: str, *extra: str):
    return start_cli(command, *_args(tmp_path, *extra), cwd=tmp_path, env={"LRSWEEP_HOST": host})


def _study(tmp_path: Path):
    return optuna.load_study(
        study_name="shared", storage=open_storage(f"journal://{tmp_path / 'sweeps' / 'study.log'}")
    )


def _exactly_once(tmp_path: Path) -> list:
    """Every (setting, seed) of the grid in exactly one COMPLETE trial; their trials."""
    done = [t for t in _study(tmp_path).trials if t.state == optuna.trial.TrialState.COMPLETE]
    pairs = [(t.user_attrs["setting"]["lr"], s) for t in done for s in t.user_attrs["seeds"]]
    assert sorted(pairs) == sorted((lr, s) for lr in LRS for s in (0, 1)), pairs
    return done


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "jfit.py").write_text(JFIT)
    (tmp_path / "sweeps").mkdir()
    return tmp_path


def test_two_hosts_share_one_journal_file_and_do_every_run_once(folder):
    # One worker each, started together: 6 settings of 1.6 s each leave both hosts work.
    a = _start(folder, "run", "host-a", "workers=1", f"results_dir={folder / 'a'}")
    b = _start(folder, "worker", "host-b", "workers=1", f"results_dir={folder / 'b'}")
    for p in (a, b):
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    done = _exactly_once(folder)
    hosts = {t.user_attrs["worker"]["host"] for t in done}
    assert hosts == {"host-a", "host-b"}  # both hosts trained
    runs = pd.read_csv(folder / "a" / "shared" / "runs.csv")
    assert len(runs) == 12 and not runs.duplicated(subset=["lr", "seed"]).any()

    status = run_cli("status", f"study.storage=journal://{folder / 'sweeps' / 'study.log'}")
    assert status.returncode == 0, status.stderr
    header, row = status.stdout.splitlines()[1:3]
    table = dict(zip(header.split(), row.split()))
    assert (table["settings"], table["done"], table["running"]) == ("6", "6", "0"), status.stdout
    report = run_cli(
        "report",
        "study.name=shared",
        f"study.storage=journal://{folder / 'sweeps' / 'study.log'}",
        f"results_dir={folder / 'rebuilt'}",
    )
    assert report.returncode == 0, report.stderr
    assert len(pd.read_csv(folder / "rebuilt" / "shared" / "runs.csv")) == 12


def _running(folder: Path, beating: bool = True) -> int:
    """Running trials; with `beating`, only those whose heartbeat was written already."""
    try:
        study = _study(folder)
    except Exception:
        return 0
    trials = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    return sum(1 for t in trials if not beating or "heartbeat" in t.user_attrs)


def test_a_killed_workers_trial_is_reclaimed_from_another_host_and_done_once(folder):
    fast = ["study.heartbeat_seconds=1", "study.grace_seconds=4", "workers=2"]
    a = _start(folder, "run", "host-a", *fast, f"results_dir={folder / 'a'}")
    try:
        end = time.monotonic() + 300
        while _running(folder) < 1 and time.monotonic() < end:
            time.sleep(0.1)
        assert _running(folder) >= 1, "no trial started"
    finally:
        kill_process_tree(a)  # kill -9, mid-trial, launcher and workers at once
    # every trial the dead host left running, a heartbeat written or not yet (a worker killed
    # between claiming its trial and its first heartbeat): each is reclaimed
    left = _running(folder, beating=False)
    assert left >= 1  # the trials of the dead host still look running
    # Another host cannot see host-a's processes: it waits for their heartbeats to go stale.
    b = _start(folder, "run", "host-b", *fast, f"results_dir={folder / 'b'}")
    out, err = b.communicate(timeout=600)
    assert b.returncode == 0, err[-3000:]
    _exactly_once(folder)
    reclaimed = [
        t
        for t in _study(folder).trials
        if t.state == optuna.trial.TrialState.FAIL
        and "no heartbeat" in t.user_attrs.get("fail_reason", "")
    ]
    assert len(reclaimed) == left
    runs = pd.read_csv(folder / "b" / "shared" / "runs.csv")
    assert len(runs) == 12 and not runs.duplicated(subset=["lr", "seed"]).any()


def test_a_file_that_is_not_a_journal_is_refused_untouched(tmp_path):
    other = tmp_path / "notes.log"
    other.write_text("hello\n")
    with pytest.raises(UserError, match=r"is not an Optuna journal file"):
        check_storage_url(f"journal://{other}")
    assert other.read_text() == "hello\n"
    with pytest.raises(UserError, match=r"folder .* does not exist"):
        check_storage_url(f"journal://{tmp_path / 'missing' / 'x.log'}")
    with pytest.raises(UserError, match=r"does not exist; run `sweep run` first"):
        check_storage_url(f"journal://{tmp_path / 'x.log'}", create=False)
