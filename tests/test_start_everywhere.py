"""A sweep from a checkpoint works where a sweep from scratch does (issue 28): `sweep refine`
adds lrs that start from the same state, and a study in PostgreSQL joined by `sweep worker`
(which takes the study's stored config) checks its copy of the checkpoint against the study's
hash."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import run_cli

from sweep.config.start import ATTR_START

pytestmark = pytest.mark.slow

START = Path(__file__).parent / "data" / "start"
SWEEP = [
    "model.hidden_size=4",
    "model.layers=1",
    "epochs=3",
    "grid.clip=[null]",
    "grid.batch_size=[128]",
    "start.epoch=20",
    "start.setting={lr:0.1}",
]


def test_refine_from_a_checkpoint_starts_its_added_runs_from_the_same_state(tmp_path):
    args = [
        *SWEEP,
        "grid.lr=[0.1,30]",
        "seeds=2",
        "refine.max_runs=8",
        "refine.max_rounds=1",
        "workers=1",
        f"start.checkpoint={START / 'digits-lstm4-sgd.pt'}",
        f"results_dir={tmp_path}",
        "study.name=r",
    ]
    p = run_cli("run", *args)
    assert p.returncode == 0, p.stderr[-3000:]
    p = run_cli("refine", *args, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "r" / "runs.csv")
    assert len(runs) > 4  # refine added runs
    assert set(runs["epochs_run"]) == {3} and runs["best_epoch"].min() >= 21
    assert sorted(pd.read_parquet(tmp_path / "r" / "curves.parquet")["epoch"].unique()) == [
        21,
        22,
        23,
    ]
    verdict = (tmp_path / "r" / "verdict.txt").read_text()
    assert "saved after epoch 20: epochs count on from 21" in verdict


@pytest.mark.postgres
def test_a_worker_joining_a_postgres_study_from_a_checkpoint_checks_its_copy(
    tmp_path, postgres_url
):
    name = f"start-{uuid.uuid4().hex[:8]}"
    checkpoint = tmp_path / "epoch-20.pt"
    shutil.copy(START / "digits-lstm4-sgd.pt", checkpoint)
    args = [
        *SWEEP,
        "grid.lr=[0.1,1.0]",
        "seeds=2",
        "workers=2",
        f"study.storage={postgres_url}",
        f"study.name={name}",
    ]
    p = run_cli("run", *args, f"start.checkpoint={checkpoint}", f"results_dir={tmp_path / 'a'}")
    assert p.returncode == 0, p.stderr[-3000:]
    study = optuna.load_study(study_name=name, storage=postgres_url)
    assert study.user_attrs[ATTR_START]["epoch"] == 20
    assert len(study.user_attrs["lrsweep.comparable"]["start.sha256"]) == 64
    runs = pd.read_csv(tmp_path / "a" / name / "runs.csv")
    assert len(runs) == 4 and runs["best_epoch"].min() >= 21
    # `sweep worker` with where to run only: the study's own config, its checkpoint included
    joined = [
        "worker",
        f"study.storage={postgres_url}",
        f"study.name={name}",
        f"results_dir={tmp_path / 'b'}",
    ]
    p = run_cli(*joined)
    assert p.returncode == 0, p.stderr[-3000:]
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")  # another file under the same name
    p = run_cli(*joined)
    assert p.returncode == 2 and "changed since the study started from it" in p.stderr, p.stderr
