"""A user's training script swept for real: `sweep run trainer=command ...` through the CLI with
a stand-in script (tests/data/fake_train.py, no framework: it starts in milliseconds) — collapse
calls, crashes, time limits, broken logs, kill -9 of the launcher and of a worker, resuming from
the script's own checkpoint folder."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import ROOT, run_cli, start_cli

pytestmark = pytest.mark.slow

TRAIN = Path(__file__).parent / "data" / "fake_train.py"
GRID = ["grid.lr=[0.1,1.0]", "grid.clip=[null,1.0]", "grid.batch_size=[32]", "seeds=2", "epochs=6"]


def command(*flags: str) -> str:
    return (
        f"{sys.executable} {TRAIN} --lr {{lr}} --clip {{clip}} --seed {{seed}} --epochs {{epochs}} "
        f"--log {{metrics}} " + " ".join(flags)
    )


def sweep_args(tmp_path: Path, *flags: str, study: str = "fake") -> list[str]:
    return [
        "trainer=command",
        f"trainer.command={command(*flags)}",
        "trainer.n_val=200",
        "trainer.chance=0.25",
        *GRID,
        f"results_dir={tmp_path / 'results'}",
        f"study.name={study}",
        "workers=2",
    ]


def runs_of(tmp_path: Path, study: str = "fake") -> pd.DataFrame:
    return pd.read_csv(tmp_path / "results" / study / "runs.csv")


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def test_a_command_sweep_calls_collapses_from_the_scripts_own_log(tmp_path):
    p = run_cli("run", *sweep_args(tmp_path))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "trainer command" in p.stdout and "n_val 200, chance 0.25" in p.stdout
    runs = runs_of(tmp_path)
    assert len(runs) == 8
    blown = runs[(runs["lr"] == 1.0) & runs["clip"].isna()]
    assert blown["collapse_mode"].tolist() == ["nonfinite", "nonfinite"]
    assert blown["collapse_epoch"].tolist() == [3, 3] and blown["epochs_run"].tolist() == [3, 3]
    assert not runs.drop(blown.index)["collapsed"].any()
    assert set(runs.drop(blown.index)["outcome"]) == {"stable"}
    assert runs["device"].str.startswith("command on cpu").all()
    folder = tmp_path / "results" / "fake"
    assert (folder / "report.html").is_file() and (folder / "summary.csv").is_file()
    # the fake script logs no gradient norms: the page says so in one line instead of an empty figure
    page = (folder / "report.html").read_text()
    assert (
        "No gradient-norm figures: the training logged no gradient norms" in page
        and "grad_norms" not in page
    )
    logs = list((folder / "runs").glob("*/seed-0/metrics.csv"))
    assert len(logs) == 4 and all((log.parent / "stderr.log").is_file() for log in logs)
    assert not (folder / "checkpoints").exists() or not any((folder / "checkpoints").iterdir())
    # the same command again: nothing is run twice
    again = run_cli("run", *sweep_args(tmp_path))
    assert again.returncode == 0 and "0 to run" in again.stdout


def test_a_crash_is_not_a_collapse_and_the_same_command_retries_it(tmp_path):
    marker = tmp_path / "crashed-once"
    args = sweep_args(tmp_path, "--crash-at 2", f"--crash-once {marker}")
    p = run_cli("run", *args, "workers=1")
    assert p.returncode == 1, p.stderr[-3000:]
    assert "1 run(s) crashed or timed out" in p.stderr
    runs = runs_of(tmp_path)
    crashed = runs[runs["outcome"] == "crashed"]
    assert len(crashed) == 1 and not crashed["collapsed"].any()
    reason = crashed["failure_reason"].iloc[0]
    # the script's own last line comes first, and lrsweep's header line is not quoted as the reason
    assert reason.startswith("exit status 1: RuntimeError: CUDA out of memory (fake)"), reason
    assert "== lrsweep" not in reason and "Traceback" in reason
    quoted = "crashed: exit status 1: RuntimeError: CUDA out of memory (fake))"
    assert quoted in p.stdout  # the verdict's line on crashed runs
    page = (tmp_path / "results" / "fake" / "report.html").read_text()
    assert '<td class="text">exit status 1: RuntimeError: CUDA out of memory (fake)</td>' in page
    assert Path(crashed["log_path"].iloc[0]).is_dir()
    summary = pd.read_csv(tmp_path / "results" / "fake" / "summary.csv")
    assert summary["n_crashed"].sum() == 1 and summary["n_runs"].sum() == 7
    retried = run_cli("run", *args, "workers=1")
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert "1 to run" in retried.stdout  # only the crashed run's setting is queued again
    runs = runs_of(tmp_path)
    assert len(runs) == 8 and set(runs["outcome"]) <= {"stable", "collapsed"}


def test_a_hung_run_is_stopped_at_the_time_limit_and_recorded_as_timed_out(tmp_path):
    args = [
        *sweep_args(tmp_path, "--hang-at 2"),
        "grid.lr=[0.1]",
        "grid.clip=[null]",
        "seeds=1",
        "trainer.timeout_minutes=0.03",
    ]
    start = time.monotonic()
    p = run_cli("run", *args)
    assert p.returncode == 1, p.stderr[-3000:]
    assert time.monotonic() - start < 60
    runs = runs_of(tmp_path)
    assert runs["outcome"].tolist() == ["timed_out"]
    assert "trainer.timeout_minutes=0.03" in runs["failure_reason"].iloc[0]


@pytest.mark.parametrize(
    "flags,needle",
    [
        ("--no-log", "was never written"),
        ("--garbage-at 2", "line 3: 'oops' in column val_accuracy is not a number"),
    ],
)
def test_a_log_that_never_appears_or_cannot_be_read_is_one_line_naming_the_file(
    tmp_path, flags, needle
):
    p = run_cli("run", *sweep_args(tmp_path, flags), "grid.lr=[0.1]", "grid.clip=[null]", "seeds=1")
    assert p.returncode == 2, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0] and "metrics.csv" in errors[0], p.stderr
    assert errors[0].endswith("seed-0/stderr.log and stdout.log")  # where to look for why
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "results" / "fake" / "runs.csv").exists()  # no result stored
    assert list(
        (tmp_path / "results" / "fake" / "runs").glob("*/seed-0/stderr.log")
    )  # the run's log is kept


def test_n_val_from_the_log_and_json_lines(tmp_path):
    args = [
        "trainer=command",
        f"trainer.command={command('--format jsonl', '--n-val 120')}",
        "trainer.n_val=log",
        "trainer.chance=0.25",
        *GRID,
        "grid.lr=[0.1]",
        "grid.clip=[null]",
        f"results_dir={tmp_path / 'results'}",
        "study.name=fake",
    ]
    p = run_cli("run", *args)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (runs_of(tmp_path)["outcome"] == "stable").all()
    p = run_cli("run", *[a.replace(" --n-val 120", "") for a in args], "study.name=fake2")
    assert p.returncode == 2 and "trainer.n_val=log, but the metrics" in p.stderr


def _training_pids(pids_file: Path) -> list[int]:
    return [int(p) for p in pids_file.read_text().split()] if pids_file.exists() else []


@pytest.mark.parametrize("victim", ["launcher", "worker"])
def test_kill_9_leaves_no_training_process_and_the_same_command_completes_each_run_once(
    tmp_path, victim
):
    """kill -9 of the launcher (its workers get SIGTERM from the parent-death signal and stop
    their runs) or of a worker (its runs' supervisor gets it and ends their process group):
    no training process survives, and the same command completes every (setting, seed) once,
    the interrupted runs resuming from the script's own checkpoint folder."""
    pids = tmp_path / "pids"
    args = sweep_args(
        tmp_path, "--sleep 0.2", "--ckpt {checkpoint_dir}", "--child", f"--pids {pids}"
    )
    proc = start_cli("run", *args, cwd=ROOT)
    deadline = time.monotonic() + 120
    folder = tmp_path / "results" / "fake"
    while (
        time.monotonic() < deadline
        and len(list(folder.glob("checkpoints/*/seed-*/state.json"))) < 2
    ):
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    if victim == "launcher":
        os.kill(proc.pid, signal.SIGKILL)
    else:
        workers = psutil.Process(
            proc.pid
        ).children()  # the launcher's own children: its workers (forked)
        assert workers and all(w.name() == "lrsweep-worker" for w in workers)
        os.kill(workers[0].pid, signal.SIGKILL)
    proc.wait(timeout=120)
    deadline = time.monotonic() + 30
    while alive(_training_pids(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(_training_pids(pids)) == []  # every script and its grandchild: gone
    p = run_cli("run", *args)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = runs_of(tmp_path)
    assert len(runs) == 8 and not runs.duplicated(["lr", "clip", "seed"]).any()
    resumed = [
        log
        for log in folder.glob("runs/*/seed-*/stdout.log")
        if log.read_text().count("== lrsweep") > 1
    ]
    assert resumed, "no run was interrupted and started again"
    for log in resumed:  # a resumed run's log holds every epoch (one written twice, when the kill
        epochs = pd.read_csv(log.parent / "metrics.csv")[
            "epoch"
        ].tolist()  # fell between log and state)
        assert sorted(set(epochs)) == list(range(6)) and len(epochs) <= 7
    assert set(runs[runs["collapse_mode"] != "nonfinite"]["epochs_run"]) == {6}
    assert alive(_training_pids(pids)) == []
