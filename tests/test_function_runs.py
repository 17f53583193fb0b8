"""A user's training function swept for real: `sweep run trainer._target_=fake_fit.fit ...`
through the CLI with a stand-in function (tests/data/fake_fit.py, no framework) — kill -9 of a
worker mid-run and the same command again (the function resumes from its checkpoint folder, and
the sweep is identical to one never interrupted), the time limit, a non-finite loss and a crash.
The command trainer's twins are in test_trainer_runs.py."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import run_cli, start_cli

pytestmark = pytest.mark.slow

FIT = Path(__file__).parent / "data" / "fake_fit.py"
GRID = ["grid.lr=[0.1,1.0]", "grid.clip=[null,1.0]", "grid.batch_size=[32]", "seeds=2", "epochs=6"]
# what differs between two sweeps that trained the same runs: where, how long, which trial
WHERE = ["seconds", "log_path", "device", "trial"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's folder holding the training function's module (sweep runs from it)."""
    shutil.copy(FIT, tmp_path / "fake_fit.py")
    return tmp_path


def sweep_args(project: Path, *more: str, study: str = "fit") -> list[str]:
    return [
        "trainer=function",
        "trainer._target_=fake_fit.fit",
        "trainer.n_val=200",
        "trainer.chance=0.25",
        *GRID,
        f"results_dir={project / 'results'}",
        f"study.name={study}",
        *more,
    ]


def runs_of(project: Path, study: str = "fit") -> pd.DataFrame:
    runs = pd.read_csv(project / "results" / study / "runs.csv")
    return runs.sort_values(["lr", "clip", "seed"], na_position="first").reset_index(drop=True)


def curves_of(project: Path, study: str = "fit") -> pd.DataFrame:
    curves = pd.read_parquet(project / "results" / study / "curves.parquet")
    key = ["lr", "clip", "seed", "epoch"]
    return curves.sort_values(key, na_position="first").reset_index(drop=True)


def test_a_function_killed_mid_run_resumes_from_its_checkpoint_and_the_sweep_is_identical(
    project,
):
    """kill -9 of a worker while its function trains: the same command reclaims the trial, the
    function resumes from its checkpoint folder (its earlier epochs join the new ones), and
    runs.csv and curves.parquet equal those of a sweep that was never interrupted."""
    reference = run_cli("run", *sweep_args(project, study="ref"), "workers=1", cwd=project)
    assert reference.returncode == 0, reference.stderr[-3000:]

    pids = project / "pids"
    args = sweep_args(project, "+trainer.sleep=0.3", f"+trainer.pids={pids}", "workers=2")
    proc = start_cli("run", *args, cwd=project)
    folder = project / "results" / "fit"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
        (log.parent / "trained.txt").is_file()
        and len((log.parent / "trained.txt").read_text().split()) >= 2
        for log in folder.glob("runs/*/seed-*/metrics.jsonl")
    ):
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    workers = psutil.Process(proc.pid).children()
    assert workers and all(w.name() == "lrsweep-worker" for w in workers)
    for worker in workers:  # every worker, mid-run: nothing may stop cleanly
        os.kill(worker.pid, signal.SIGKILL)
    proc.wait(timeout=120)

    again = run_cli("run", *args, cwd=project)
    assert again.returncode == 0, again.stderr[-3000:]
    starts = {
        p.parent: [int(s) for s in p.read_text().split()]
        for p in folder.glob("runs/*/*/starts.txt")
    }
    resumed = {run: s for run, s in starts.items() if len(s) > 1}
    assert resumed, "no run was interrupted and started again"
    assert any(s[-1] > 0 for s in resumed.values()), f"no run resumed from a checkpoint: {starts}"
    ref, got = runs_of(project, "ref"), runs_of(project)
    assert len(got) == 8 and not got.duplicated(["lr", "clip", "seed"]).any()
    pd.testing.assert_frame_equal(got.drop(columns=WHERE), ref.drop(columns=WHERE))
    pd.testing.assert_frame_equal(curves_of(project), curves_of(project, "ref"))


def test_a_function_past_the_time_limit_is_stopped_at_its_next_report_as_timed_out(project):
    args = sweep_args(
        project,
        "grid.lr=[0.1]",
        "grid.clip=[null]",
        "seeds=1",
        "+trainer.sleep=0.5",
        "trainer.timeout_minutes=0.01",  # 0.6 s: the second report is past it
    )
    p = run_cli("run", *args, cwd=project)
    assert p.returncode == 1, p.stderr[-3000:]
    runs = runs_of(project)
    assert runs["outcome"].tolist() == ["timed_out"] and not runs["collapsed"].any()
    assert "trainer.timeout_minutes=0.01" in runs["failure_reason"].iloc[0]
    trained = next((project / "results" / "fit" / "runs").glob("*/seed-0/trained.txt"))
    assert trained.read_text().split() == ["1", "2"]  # no epoch trained after the limit


def test_a_non_finite_loss_stops_the_function_there_as_a_nonfinite_collapse(project):
    p = run_cli("run", *sweep_args(project, "grid.clip=[null]", "workers=1"), cwd=project)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = runs_of(project)
    blown = runs[runs["lr"] == 1.0]
    assert blown["collapse_mode"].tolist() == ["nonfinite", "nonfinite"]
    assert blown["collapse_epoch"].tolist() == [3, 3] and blown["epochs_run"].tolist() == [3, 3]
    assert set(runs[runs["lr"] == 0.1]["outcome"]) == {"stable"}
    for trained in (project / "results" / "fit" / "runs").glob("lr1*/seed-*/trained.txt"):
        assert trained.read_text().split() == [
            "1",
            "2",
            "3",
        ]  # stopped at the NaN: no compute wasted
    curves = curves_of(project)
    nan_rows = curves[(curves["lr"] == 1.0) & (curves["epoch"] == 3)]
    assert len(nan_rows) == 2 and nan_rows["train_loss"].isna().all()  # stored as NaN, not dropped


def test_a_function_that_raises_is_a_crash_quoting_its_error(project):
    args = sweep_args(
        project, "grid.lr=[0.1]", "grid.clip=[null]", "seeds=1", "+trainer.crash_at=3"
    )
    p = run_cli("run", *args, cwd=project)
    assert p.returncode == 1, p.stderr[-3000:]
    runs = runs_of(project)
    assert runs["outcome"].tolist() == ["crashed"] and not runs["collapsed"].any()
    assert "RuntimeError: fake failure at epoch 3" in runs["failure_reason"].iloc[0]
    assert runs["epochs_run"].tolist() == [2]
