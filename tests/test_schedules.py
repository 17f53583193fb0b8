"""Learning-rate schedules (config group schedule/): values, purity, training, grid axis."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from sweep.config import (
    ConstantSchedule,
    CosineSchedule,
    OneCycleSchedule,
    WarmupSchedule,
    load_config,
)
from sweep.core.errors import UserError
from sweep.tasks import build_task
from sweep.training import StopRequested, train_setting
from sweep.training.optim import lr_at

CPU = torch.device("cpu")
TINY = [
    "task=vector_sum",
    "task.length=10",
    "task.n_train=128",
    "task.n_val=32",
    "model.hidden_size=8",
    "model.layers=1",
    "optimizer=adam",
    "epochs=4",
]
SETTING = {"lr": 0.02, "clip": None, "batch_size": 32}  # 4 steps per epoch, 16 in all


# --------------------------------------------------------------------------- values


def test_constant_and_zero_warmup_are_flat():
    for cfg in (
        ConstantSchedule(),
        WarmupSchedule(warmup_steps=0),
        CosineSchedule(min_lr_ratio=1.0),
    ):
        assert [lr_at(cfg, s, 50, 0.1) for s in range(50)] == pytest.approx([0.1] * 50)


def test_warmup_rises_linearly_then_stays():
    cfg = WarmupSchedule(warmup_steps=4)
    assert [lr_at(cfg, s, 10, 1.0) for s in range(6)] == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    )


def test_cosine_decays_from_lr_to_min_ratio_after_warmup():
    cfg = CosineSchedule(warmup_steps=5, min_lr_ratio=0.1)
    lrs = [lr_at(cfg, s, 106, 2.0) for s in range(106)]  # 100 decay steps after warmup
    assert lrs[:5] == pytest.approx([0.4, 0.8, 1.2, 1.6, 2.0])
    assert lrs[5] == pytest.approx(2.0) and lrs[-1] == pytest.approx(0.2)
    assert lrs[55] == pytest.approx(1.1)  # halfway through the decay: the middle of lr and min
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))  # monotone decay


@pytest.mark.parametrize(
    "total,pct,div,final", [(100, 0.3, 25.0, 1e4), (37, 0.25, 10.0, 100.0), (10, 0.05, 25.0, 1e4)]
)
def test_onecycle_matches_torch_onecyclelr(total, pct, div, final):
    cfg = OneCycleSchedule(pct_start=pct, div_factor=div, final_div_factor=final)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=0.5,
        total_steps=total,
        pct_start=pct,
        div_factor=div,
        final_div_factor=final,
        cycle_momentum=False,
    )
    expected = []
    for step in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        if step < total - 1:
            sched.step()
    assert [lr_at(cfg, s, total, 0.5) for s in range(total)] == pytest.approx(expected, rel=1e-12)


def test_lr_at_is_a_pure_function_of_step():
    for cfg in (WarmupSchedule(), CosineSchedule(warmup_steps=3), OneCycleSchedule()):
        forward = [lr_at(cfg, s, 40, 0.1) for s in range(40)]
        backward = [lr_at(cfg, s, 40, 0.1) for s in reversed(range(40))][::-1]
        assert forward == backward


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["schedule=warmup", "schedule.warmup_steps=-1"], "schedule.warmup_steps: must be >= 0"),
        (
            ["schedule=cosine", "schedule.min_lr_ratio=1.5"],
            "schedule.min_lr_ratio: must be in [0, 1]",
        ),
        (["schedule=onecycle", "schedule.pct_start=1"], "schedule.pct_start: must be in (0, 1)"),
        (["schedule=onecycle", "schedule.div_factor=0.5"], "schedule.div_factor: must be >= 1"),
        (
            ["schedule=warmup", "schedule.warmup_steps=1.5"],
            "schedule.warmup_steps: must be an integer",
        ),
        (
            ["schedule=linear"],
            "unknown schedule; valid schedules: constant, cosine, onecycle, step, warmup",
        ),
    ],
)
def test_bad_schedule_values_raise_one_line_user_errors(overrides, needle):
    with pytest.raises(UserError) as info:
        load_config(overrides)
    assert needle in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- training


def _train(overrides, setting=SETTING, seeds=(0,), **kwargs):
    cfg = load_config(TINY + list(overrides))
    task = build_task(cfg.task)
    return cfg, train_setting(task, cfg, setting, list(seeds), CPU, **kwargs)


@pytest.mark.parametrize(
    "schedule",
    [
        ["schedule=constant"],
        ["schedule=warmup", "schedule.warmup_steps=6"],
        ["schedule=cosine", "schedule.warmup_steps=2"],
        ["schedule=onecycle"],
    ],
)
def test_each_schedule_trains_and_records_its_lr(schedule):
    cfg, (r,) = _train(schedule)
    loss = r.curves["train_loss"]
    assert r.nonfinite is None and loss[-1] < loss[0]
    # The per-epoch `epoch_lr` is the rate of the epoch's last step.
    expected = [lr_at(cfg.schedule, 4 * e - 1, 16, SETTING["lr"]) for e in range(1, 5)]
    assert r.curves["epoch_lr"] == pytest.approx(expected)


def same_curves(a, b):
    """Equal curves, NaN equal to NaN (regression runs have no pred_top_frac)."""
    return a.keys() == b.keys() and all(
        len(a[k]) == len(b[k])
        and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a[k], b[k]))
        for k in a
    )


class MemoryCheckpointer:
    def __init__(self):
        self.state = None

    def load(self):
        return self.state

    def maybe_save(self, epoch, state, force=False):
        if force:
            self.state = state()

    def clear(self):
        self.state = None


@pytest.mark.parametrize(
    "schedule", [["schedule=onecycle"], ["schedule=cosine", "schedule.warmup_steps=3"]]
)
def test_resumed_run_continues_the_schedule_exactly(schedule):
    _, straight = _train(schedule)
    ckpt = MemoryCheckpointer()
    calls = iter([False, True])  # stop after epoch 2
    with pytest.raises(StopRequested):
        _train(schedule, checkpointer=ckpt, should_stop=lambda: next(calls))
    _, resumed = _train(schedule, checkpointer=ckpt)
    assert same_curves(resumed[0].curves, straight[0].curves)


def test_warmup_steps_as_grid_axis():
    cfg = load_config(
        TINY
        + [
            "schedule=warmup",
            "+grid.schedule.warmup_steps=[0,8]",
            "grid.lr=[0.02]",
            "grid.clip=[null]",
        ]
    )
    assert dict(cfg.grid.extra) == {"schedule.warmup_steps": (0, 8)}
    settings = cfg.grid.settings()
    assert [s["schedule.warmup_steps"] for s in settings] == [0, 8]
    task = build_task(cfg.task)
    (none,) = train_setting(task, cfg, settings[0], [0], CPU)
    (warm,) = train_setting(task, cfg, settings[1], [0], CPU)
    assert none.curves["epoch_lr"][0] == pytest.approx(0.02)
    assert warm.curves["epoch_lr"][0] == pytest.approx(0.02 * 4 / 8)  # step 4 of 8 warmup steps
    assert none.curves["train_loss"] != warm.curves["train_loss"]
    with pytest.raises(UserError, match="schedule.warmup_steps: must be >= 0"):
        load_config(TINY + ["schedule=warmup", "+grid.schedule.warmup_steps=[-5,8]"])
    with pytest.raises(UserError, match="grid.schedule.warmup_steps: not a config key"):
        load_config(TINY + ["+grid.schedule.warmup_steps=[0,8]"])  # constant has no warmup


@pytest.mark.slow
def test_cli_sweeps_warmup_steps_as_an_extra_column(tmp_path):
    """The extra axis is a column of every table; curves keep the grid `lr` next to `epoch_lr`."""
    from conftest import run_cli

    results = tmp_path / "results"
    proc = run_cli(
        "run",
        *TINY,
        "epochs=2",
        "seeds=1",
        "schedule=warmup",
        "+grid.schedule.warmup_steps=[0,16]",
        "grid.lr=[0.02]",
        "grid.clip=[null]",
        "grid.batch_size=[32]",
        f"results_dir={results}",
        "study.name=warm",
        "workers=1",
    )
    assert proc.returncode == 0, proc.stderr
    runs = pd.read_csv(results / "warm" / "runs.csv")
    summary = pd.read_csv(results / "warm" / "summary.csv")
    assert sorted(runs["schedule.warmup_steps"]) == [0, 16]
    assert sorted(summary["schedule.warmup_steps"]) == [0, 16] and len(summary) == 2
    assert (runs["lr"] == 0.02).all() and (summary["lr"] == 0.02).all()
    curves = pd.read_parquet(results / "warm" / "curves.parquet")
    assert sorted(curves["schedule.warmup_steps"].unique()) == [0, 16] and len(curves) == 4
    assert (curves["lr"] == 0.02).all()
    warm = curves[curves["schedule.warmup_steps"] == 16].sort_values("epoch")
    assert warm["epoch_lr"].tolist() == pytest.approx([0.02 * 4 / 16, 0.02 * 8 / 16])
