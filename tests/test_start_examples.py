"""The Keras and Lightning examples from a checkpoint (issue 28), each once for real at a tiny
size: the original training saved by the framework, then a sweep whose every run continues it
(`keras.saving.load_model` + `initial_epoch`; Lightning's `ckpt_path`), its epochs counted on from
the checkpoint's, the original run's log read as the history (start.log)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.integration("keras", "lightning")]

GRID = ["grid.lr=[0.3,3.0]", "grid.clip=[null]", "grid.batch_size=[32]", "seeds=1", "epochs=2"]
ACCURACY = ["trainer.n_val=360", "trainer.chance=0.1", "workers=2"]


def _original(script: Path, cwd: Path, *args: str) -> None:
    p = subprocess.run(
        [
            sys.executable,
            str(script),
            "--lr",
            "0.3",
            "--epochs",
            "3",
            "--units",
            "8",
            "--layers",
            "1",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]


def _check(results: Path, study: str) -> None:
    runs = pd.read_csv(results / study / "runs.csv")
    assert set(runs["epochs_run"]) == {2} and runs["best_epoch"].min() >= 4
    curves = pd.read_parquet(results / study / "curves.parquet")
    assert sorted(curves["epoch"].unique()) == [4, 5]
    verdict = (results / study / "verdict.txt").read_text()
    assert "saved after epoch 3: epochs count on from 4" in verdict
    assert "From epoch 3, the original lr 0.3 collapses in 0 of 1 data orders; lr 3 in" in verdict


def test_the_keras_example_continues_a_saved_model_in_every_run(tmp_path):
    folder = ROOT / "examples" / "keras_script"
    _original(
        folder / "from_checkpoint.py", tmp_path, "--save", "original.keras", "--log", "original.csv"
    )
    command = (
        f"{sys.executable} {folder / 'from_checkpoint.py'} --init {{init_checkpoint}} "
        "--initial-epoch {start_epoch} --epochs {epochs} --lr {lr} --clipnorm {clip} --seed {seed} "
        "--log {metrics} --ckpt-dir {checkpoint_dir}"
    )
    p = run_cli(
        "run",
        "trainer=command",
        f"trainer.command={command}",
        *ACCURACY,
        *GRID,
        f"start.checkpoint={tmp_path / 'original.keras'}",
        "start.epoch=3",
        f"start.log={tmp_path / 'original.csv'}",
        "start.setting={lr:0.3}",
        f"results_dir={tmp_path / 'results'}",
        "study.name=keras",
        cwd=tmp_path,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    _check(tmp_path / "results", "keras")


def test_the_lightning_example_continues_a_checkpoint_in_every_run(tmp_path):
    folder = ROOT / "examples" / "lightning_script"
    _original(
        folder / "from_checkpoint.py", tmp_path, "--save", "original.ckpt", "--log-dir", "original"
    )
    command = (
        f"{sys.executable} {folder / 'from_checkpoint.py'} --init {{init_checkpoint}} "
        "--initial-epoch {start_epoch} --epochs {epochs} --lr {lr} --clip {clip} --seed {seed} "
        "--log-dir {run_dir}"
    )
    p = run_cli(
        "run",
        "trainer=command",
        f"trainer.command={command}",
        *ACCURACY,
        *GRID,
        f"start.checkpoint={tmp_path / 'original.ckpt'}",
        "start.epoch=3",
        f"start.log={tmp_path / 'original' / 'metrics.csv'}",
        "start.setting={lr:0.3}",
        f"results_dir={tmp_path / 'results'}",
        "study.name=lightning",
        cwd=tmp_path,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    _check(tmp_path / "results", "lightning")
