"""The README's promise: on the CPU, the same config and seeds give identical curves whatever
the machine and however many workers share it (each worker trains with `threads` torch threads,
1 unless set, not with a share of the machine's cores), and a study keeps one thread count.
Whether a worker was forked from the launcher or started as a fresh interpreter changes nothing."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import run_cli

from sweep.config import load_config
from sweep.tasks import build_task
from sweep.training import train_setting

# High learning rates, where rounding differences grow fastest (the 8 of 20 runs).
GRID = [
    "model.hidden_size=32",
    "epochs=3",
    "seeds=2",
    "grid.lr=[0.3,1.0]",
    "grid.clip=[null,1.0]",
    "grid.batch_size=[64]",
    "study.name=repro",
]


@pytest.mark.slow
def test_the_worker_count_does_not_change_any_curve_and_a_study_keeps_its_threads(tmp_path):
    curves = {}
    for workers, start in (
        (1, "exec"),
        (2, "fork"),
    ):  # a fresh interpreter; forked from the launcher
        results = tmp_path / f"w{workers}"
        p = run_cli(
            "run",
            *GRID,
            f"workers={workers}",
            f"results_dir={results}",
            env={"LRSWEEP_WORKER_START": start},
        )
        assert p.returncode == 0, p.stderr[-2000:]
        curves[workers] = pd.read_parquet(results / "repro" / "curves.parquet")
        runs = pd.read_csv(results / "repro" / "runs.csv")
        assert set(runs["device"]) == {"cpu (1 thread)"}
    pd.testing.assert_frame_equal(curves[1], curves[2])  # bit for bit
    p = run_cli("run", *GRID, "threads=2", f"results_dir={tmp_path / 'w1'}")
    assert p.returncode == 2
    assert p.stderr.startswith(
        "error: threads: study 'repro' was run with threads=1, this config has 2"
    )


def test_a_run_records_the_thread_count_it_trained_with():
    cfg = load_config(["model.hidden_size=8", "model.layers=1", "epochs=1", "seeds=1"])
    task = build_task(cfg.task)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        (record,) = train_setting(
            task, cfg, {"lr": 0.1, "clip": None, "batch_size": 256}, [0], torch.device("cpu")
        )
    finally:
        torch.set_num_threads(before)
    assert record.device == "cpu (2 threads)"
