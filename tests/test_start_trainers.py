"""A user's training from a checkpoint (issue 28): the command trainer's {init_checkpoint} and
{start_epoch}, the function trainer's init_checkpoint and start_epoch, through the real CLI with
stand-ins that start in milliseconds (tests/data/start/fake_start_train.py, fake_start_fit.py):
epochs counted on from the checkpoint's, and a kill -9 mid-sweep then the same command equal to
a sweep never interrupted."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import kill_process_tree, run_cli, start_cli

from sweep.trainers.logs import parse_log

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data" / "start"
CHECKPOINT = DATA / "fake-checkpoint.json"
GRID = ["grid.lr=[0.1,1.0]", "grid.clip=[null,1.0]", "grid.batch_size=[32]", "seeds=2", "epochs=7"]
START = [f"start.checkpoint={CHECKPOINT}", "start.epoch=900", "start.setting={lr:0.1,clip:null}"]
WHERE = ["seconds", "log_path", "device", "trial"]  # where and when a run trained


def command_args(results: Path, *flags: str, study: str = "cmd") -> list[str]:
    command = (
        f"{sys.executable} {DATA / 'fake_start_train.py'} --init {{init_checkpoint}} "
        "--initial-epoch {start_epoch} --epochs {epochs} --lr {lr} --clip {clip} --seed {seed} "
        "--log {metrics} --ckpt {checkpoint_dir} " + " ".join(flags)
    )
    return [
        "trainer=command",
        f"trainer.command={command}",
        "trainer.n_val=200",
        "trainer.chance=0.25",
        *GRID,
        *START,
        f"results_dir={results}",
        f"study.name={study}",
    ]


def function_args(results: Path, *more: str, study: str = "fit") -> list[str]:
    return [
        "trainer=function",
        "trainer._target_=fake_start_fit.fit",
        "trainer.n_val=200",
        "trainer.chance=0.25",
        *GRID,
        *START,
        f"results_dir={results}",
        f"study.name={study}",
        *more,
    ]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(DATA / "fake_start_fit.py", tmp_path / "fake_start_fit.py")
    return tmp_path


def tables(results: Path, study: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    key = ["lr", "clip", "seed"]
    runs = pd.read_csv(results / study / "runs.csv").drop(columns=WHERE)
    curves = pd.read_parquet(results / study / "curves.parquet")
    return (
        runs.sort_values(key, na_position="first").reset_index(drop=True),
        curves.sort_values([*key, "epoch"], na_position="first").reset_index(drop=True),
    )


def check_from_epoch_900(results: Path, study: str) -> None:
    runs, curves = tables(results, study)
    assert sorted(curves["epoch"].unique()) == list(range(901, 908))
    lost = runs[(runs["lr"] == 1.0) & runs["clip"].isna()]
    assert lost["collapsed"].all() and set(lost["collapse_epoch"]) == {903}
    assert not runs[runs["clip"].notna()]["collapsed"].any()
    verdict = (results / study / "verdict.txt").read_text()
    assert "saved after epoch 900: epochs count on from 901" in verdict
    assert (
        "From epoch 900, the original lr 0.1 with no clipping collapses in 0 of 2 data orders; "
        "lr 1 in 2 of 2; clipping at 1 in 0 of 2; lr 1 with clipping at 1 in 0 of 2."
    ) in verdict


def _kill_mid_run(args: list[str], cwd: Path, folder: Path) -> None:
    """Start the sweep, kill -9 its whole process tree once a run has written its own progress."""
    proc = start_cli("run", *args, cwd=cwd)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if any((folder / "checkpoints").glob("*/seed-*/state.json")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed mid-run"
    kill_process_tree(proc)


def test_a_command_from_a_checkpoint_then_a_kill_and_resume_equals_an_uninterrupted_sweep(
    tmp_path,
):
    reference = run_cli("run", *command_args(tmp_path, study="ref"), "workers=1", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-3000:]
    check_from_epoch_900(tmp_path, "ref")
    args = command_args(tmp_path, "--sleep 0.2", study="cmd")
    _kill_mid_run([*args, "workers=2"], tmp_path, tmp_path / "cmd")
    p = run_cli("run", *args, "workers=2", cwd=tmp_path)  # the same command
    assert p.returncode == 0, p.stderr[-3000:]
    for a, b in zip(tables(tmp_path, "cmd"), tables(tmp_path, "ref")):
        pd.testing.assert_frame_equal(a, b)


def test_a_function_from_a_checkpoint_then_a_kill_and_resume_equals_an_uninterrupted_sweep(
    project,
):
    reference = run_cli("run", *function_args(project, study="ref"), "workers=1", cwd=project)
    assert reference.returncode == 0, reference.stderr[-3000:]
    check_from_epoch_900(project, "ref")
    args = function_args(project, "+trainer.sleep=0.2", "workers=2")
    _kill_mid_run(args, project, project / "fit")
    p = run_cli("run", *args, cwd=project)
    assert p.returncode == 0, p.stderr[-3000:]
    for a, b in zip(tables(project, "fit"), tables(project, "ref")):
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("epoch,val_accuracy,val_loss\n900,0.8,0.5\n901,0.7,0.6\n", 0.8),  # Keras: from N
        ('{"epoch": 901, "val_acc": 0.8}\n{"epoch": 902, "val_acc": 0.7}\n', 0.8),  # from N+1
        ("epoch,val_accuracy,val_loss\n0,0.8,0.5\n1,0.7,0.6\n", 0.8),  # its own count, from 0
    ],
    ids=["keras-initial-epoch", "jsonl-from-n-plus-1", "counted-afresh"],
)
def test_a_log_from_a_checkpoint_may_count_epochs_on_from_it_or_afresh(text, first):
    log = parse_log(text, metric="acc", start_epoch=900)
    assert [e["val_acc"] for e in log.epochs] == [first, 0.7]
