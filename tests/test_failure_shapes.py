"""Issue 14: the failure shapes beyond collapse, end to end through the tables, the verdict and
the figures: loss jumps that never recover, loss fluctuation by batch size and lr,
discriminative learning rates, and the data summary in the report's header.

The detectors themselves (sweep.analysis.shapes) are tested on simulated curves in test_shapes.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from sweep.analysis.conclusions import compute_verdicts
from sweep.analysis.data_checks import data_lines, data_warnings
from sweep.analysis.shapes.reading import _direction, loss_jump_sentence, volatility_sentences
from sweep.analysis.stats import mean_interval, wilson_interval
from sweep.analysis.tables import build_tables
from sweep.config import DetectConfig
from sweep.report.figures import figure_plan, grid_of, learning_curves
from sweep.report.volatility import has_volatility, volatility_figure

CHANCE = 0.1


def record(
    seed: int,
    val_loss: np.ndarray,
    val_acc: np.ndarray,
    train_loss: np.ndarray | None = None,
    step_sd: float = 0.0,
) -> dict[str, Any]:
    n = len(val_loss)
    train = train_loss if train_loss is not None else val_loss * 0.9
    curves = {
        "train_loss": train,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "grad_norm_mean": np.full(n, 0.5),
        "grad_norm_max": np.full(n, 1.0),
        "grad_norm_p90": np.full(n, 0.7),
        "clip_fraction": np.zeros(n),
        "pred_top_frac": np.full(n, 0.2),
        "lr": np.full(n, 0.1),
        "val_loss_sd": np.full(n, 0.5),
        "train_loss_sd": train * step_sd,
    }
    return {
        "seed": seed,
        "nonfinite": None,
        "nonfinite_epoch": None,
        "steps": 10 * n,
        "seconds": 0.1,
        "curves": {k: [float(x) for x in v] for k, v in curves.items()},
    }


def users_run(
    rng: np.random.Generator, seed: int, jump: bool, epochs: int = 120, at: int = 80
) -> dict[str, Any]:
    """The reported shape, shortened: val loss settles at 0.278 and, at epoch `at`, jumps to
    0.337 (1.21x) and stays; val accuracy slips from 0.889 to 0.859. 1% multiplicative noise."""
    t = np.arange(epochs)
    loss = 0.278 + (2.3 - 0.278) * np.exp(-t / 10.0)
    acc = 0.889 - (0.889 - CHANCE) * np.exp(-t / 10.0)
    if jump:
        loss = np.where(t >= at - 1, 0.337, loss)
        acc = np.where(t >= at - 1, 0.859, acc)
    return record(
        seed, loss * np.exp(rng.normal(0, 0.01, epochs)), acc + rng.normal(0, 0.003, epochs)
    )


def tables_of(
    runs: list[tuple[dict[str, Any], dict[str, Any], int]],
    detect: DetectConfig | None = None,
    n_val: int = 2000,
):
    detect = detect or DetectConfig()
    tables = build_tables(runs, CHANCE, detect, axes=["lr", "clip", "batch_size"], n_val=n_val)
    tables.meta = {
        "config": {"study": {"name": "shapes"}, "epochs": 120},
        "study": "shapes",
        "task": {"chance": CHANCE, "kind": "classification", "n_val": n_val},
        "detect": detect.__dict__,
    }
    return tables


SETTING = {"lr": 0.1, "clip": None, "batch_size": 32}


# --------------------------------------------------------------------------- 1. loss jumps


def test_the_reported_run_is_a_loss_jump_not_a_collapse():
    rng = np.random.default_rng(0)
    runs = [(SETTING, users_run(rng, s, jump=s < 3), 0) for s in range(5)]
    t = tables_of(runs)
    rows = t.runs.set_index("seed")
    assert not rows["collapsed"].any()  # today's definition: a drop far smaller than detect.drop
    assert list(rows["loss_jump_epoch"].notna()) == [True, True, True, False, False]
    assert all(abs(int(e) - 80) <= 1 for e in rows["loss_jump_epoch"].dropna())
    assert all(1.15 < r < 1.3 for r in rows["loss_jump_ratio"].dropna())
    s = t.summary.iloc[0]
    rate, lo, hi = wilson_interval(3, 5)
    assert (
        int(s["n_loss_jump"]),
        s["loss_jump_rate"],
        s["loss_jump_rate_lo"],
        s["loss_jump_rate_hi"],
    ) == (3, pytest.approx(rate), pytest.approx(lo), pytest.approx(hi))
    reading = compute_verdicts(t).reading
    assert "loss jump" in reading and "3/5 runs at lr=0.1" in reading
    assert "3 of them did not collapse" in reading and "1.2" in reading


def test_noise_alone_and_recovering_spikes_raise_no_loss_jump():
    rng = np.random.default_rng(1)
    runs = [(SETTING, users_run(rng, s, jump=False), 0) for s in range(20)]
    spiky = users_run(rng, 20, jump=False)
    vl = np.array(spiky["curves"]["val_loss"])
    vl[60:63] *= 2.0  # a three-epoch spike that comes back
    spiky["curves"]["val_loss"] = list(vl)
    runs.append((SETTING, spiky, 0))
    t = tables_of(runs)
    assert t.runs["loss_jump_epoch"].isna().all()
    assert int(t.summary.iloc[0]["n_loss_jump"]) == 0
    assert "loss jump" not in compute_verdicts(t).reading


def test_detect_jump_z_is_the_threshold_used():
    rng = np.random.default_rng(2)
    runs = [(SETTING, users_run(rng, 0, jump=True), 0)]
    assert tables_of(runs).runs["loss_jump_epoch"].notna().all()
    strict = DetectConfig(jump_z=60.0)  # the 1.21x step is ~19 noise sds: not beyond 60
    assert tables_of(runs, strict).runs["loss_jump_epoch"].isna().all()
    rise = DetectConfig(jump_min_rise=1.5)
    assert tables_of(runs, rise).runs["loss_jump_epoch"].isna().all()


def test_learning_curves_mark_each_loss_jump_at_its_epoch():
    rng = np.random.default_rng(3)
    runs = [(SETTING, users_run(rng, s, jump=s < 2), 0) for s in range(4)]
    fig = learning_curves(tables_of(runs))
    loss_ax = fig.axes[1]
    marks = [ln for ln in loss_ax.get_lines() if ln.get_marker() == "^"]
    assert len(marks) == 2
    assert all(abs(ln.get_xdata()[0] - 80) <= 1 for ln in marks)
    assert any("loss jump" in text.get_text() for text in fig.legends[0].get_texts())


def test_loss_jump_sentence_is_empty_without_jumps():
    summary = pd.DataFrame([{**SETTING, "n_loss_jump": 0, "n_runs": 3, "loss_jump_rate": 0.0}])
    runs = pd.DataFrame([{**SETTING, "loss_jump_epoch": None, "collapsed": False}])
    assert loss_jump_sentence(summary, runs, ["lr", "clip", "batch_size"]) == ""


# --------------------------------------------------------------------------- 2. fluctuation


def noisy_run(
    rng: np.random.Generator, seed: int, sigma: float, epochs: int = 30, step_sd: float = 0.1
):
    t = np.arange(epochs)
    train = (0.3 + 2.0 * np.exp(-t / 4.0)) * np.exp(rng.normal(0, sigma, epochs))
    return record(
        seed, train * 1.1, 0.8 - 0.7 * np.exp(-t / 4.0), train_loss=train, step_sd=step_sd
    )


def batch_grid(rng: np.random.Generator, sigmas: dict[int, float], seeds: int = 4, lrs=(0.1,)):
    runs, trial = [], 0
    for lr in lrs:
        for bs, sigma in sigmas.items():
            for s in range(seeds):
                runs.append(
                    (
                        {"lr": lr, "clip": None, "batch_size": bs},
                        noisy_run(rng, s, sigma * lr / lrs[0], step_sd=sigma * 4),
                        trial,
                    )
                )
            trial += 1
    return tables_of(runs)


def test_volatility_per_run_and_its_mean_interval_per_setting():
    rng = np.random.default_rng(4)
    t = batch_grid(rng, {2: 0.08, 8: 0.03, 32: 0.01})
    for bs, sigma in ((2, 0.08), (8, 0.03), (32, 0.01)):
        runs = t.runs[t.runs["batch_size"] == bs]
        assert all(
            0.4 * sigma < v < 2.0 * sigma for v in runs["volatility"]
        )  # estimates the noise sd
        row = t.summary[t.summary["batch_size"] == bs].iloc[0]
        mean, lo, hi = mean_interval(list(runs["volatility"]), bounds=(0.0, math.inf))
        assert (row["volatility"], row["volatility_lo"], row["volatility_hi"]) == (
            pytest.approx(mean),
            pytest.approx(lo),
            pytest.approx(hi),
        )
        assert row["step_loss_cv"] == pytest.approx(sigma * 4)


def test_the_verdict_states_how_fluctuation_changes_with_batch_size_and_lr():
    rng = np.random.default_rng(5)
    t = batch_grid(rng, {2: 0.08, 8: 0.03, 32: 0.01}, lrs=(0.1, 0.4))
    reading = compute_verdicts(t).reading
    assert "volatility" in reading
    assert "falls as batch size grows in 2 of 2 slices" in reading
    assert "rises as lr grows" in reading  # the noise was made to scale with lr
    same = batch_grid(rng, {2: 0.03, 32: 0.03})
    text = " ".join(volatility_sentences(same.summary, ["lr", "clip", "batch_size"]))
    assert "does not change with batch size beyond the seeds' spread" in text


def test_a_direction_is_claimed_for_equal_settings_at_most_1_percent_of_the_time():
    """Two settings whose runs have the same volatility distribution (lognormal spread of 40%
    between seeds, as real seeds show): the claim 'falls'/'rises' needs disjoint 95% intervals."""
    rng = np.random.default_rng(6)
    claims, reps = 0, 4000
    for _ in range(reps):
        seeds = int(rng.integers(2, 11))
        rows = []
        for _ in range(2):
            values = 0.03 * np.exp(rng.normal(0, 0.4, seeds))
            mean, lo, hi = mean_interval(list(values), bounds=(0.0, math.inf))
            rows.append({"volatility": mean, "volatility_lo": lo, "volatility_hi": hi})
        claims += _direction(rows[0], rows[1]) != "same"
    assert claims / reps <= 0.01


def test_volatility_figure_only_with_two_or_more_batch_sizes():
    rng = np.random.default_rng(7)
    one = batch_grid(rng, {32: 0.02})
    assert not has_volatility(grid_of(one))
    assert "volatility" not in [kind for kind, *_ in figure_plan(one)]
    three = batch_grid(rng, {2: 0.08, 8: 0.03, 32: 0.01}, lrs=(0.1, 0.4))
    assert "volatility" in [kind for kind, *_ in figure_plan(three)]
    fig = volatility_figure(three)
    top, bottom = fig.axes[0], fig.axes[1]
    assert top.get_ylabel().startswith("volatility") and bottom.get_ylabel().startswith(
        "step_loss_cv"
    )
    assert len(top.containers) == 2  # one line (with error bars) per lr
    xs = sorted(top.containers[0].lines[0].get_xdata())
    assert xs == [2.0, 8.0, 32.0]
    ys = top.containers[0].lines[0].get_ydata()
    assert ys[0] > ys[1] > ys[2]  # the made-up noise falls with batch size


# --------------------------------------------------------------------------- 3. discriminative lrs


def test_group_multipliers_set_each_groups_lr_and_survive_the_schedule():
    from sweep.config import load_config
    from sweep.tasks import build_task
    from sweep.training.gradients import ParamGroups
    from sweep.training.models import build_model
    from sweep.training.optim import build_optimizer, set_lr

    cfg = load_config(["model.hidden_size=8", "optimizer.group_lr_mult=[0.11,0.33,1.0]"])
    task = build_task(cfg.task)
    model = build_model(cfg.model, task, 0)
    params = list(model.parameters())
    groups = ParamGroups.of(model, params)
    assert groups.names == ["rnn.l0", "rnn.l1", "head"]
    opt = build_optimizer(params, cfg.optimizer, 0.3, torch.device("cpu"), groups)
    assert [g["group"] for g in opt.param_groups] == ["rnn.l0", "rnn.l1", "head"]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.033, 0.099, 0.3])
    set_lr(opt, 0.1)  # what the schedule does every step
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.011, 0.033, 0.1])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(params)


def test_multipliers_of_one_are_exactly_the_plain_optimizer():
    from sweep.config import load_config
    from sweep.tasks import build_task
    from sweep.training import train_setting

    setting = {"lr": 0.1, "clip": 1.0, "batch_size": 64}
    base = ["model.hidden_size=8", "epochs=2", "packing=off"]
    task = build_task(load_config(base).task)
    plain = train_setting(task, load_config(base), setting, [0], torch.device("cpu"))[0]
    ones = train_setting(
        task,
        load_config(base + ["optimizer.group_lr_mult=[1,1,1]"]),
        setting,
        [0],
        torch.device("cpu"),
    )[0]
    slow = train_setting(
        task,
        load_config(base + ["optimizer.group_lr_mult=[0.01,0.01,1]"]),
        setting,
        [0],
        torch.device("cpu"),
    )[0]
    assert ones.curves["val_loss"] == plain.curves["val_loss"]
    assert slow.curves["val_loss"] != plain.curves["val_loss"]


@pytest.mark.parametrize("packing", ["off", "on"])
def test_packed_and_separate_training_agree_with_group_multipliers(packing):
    from sweep.config import load_config
    from sweep.tasks import build_task
    from sweep.training import train_setting

    setting = {"lr": 0.2, "clip": 1.0, "batch_size": 64}
    base = ["model.hidden_size=8", "epochs=2", "optimizer.group_lr_mult=[0.1,0.5,1.0]"]
    task = build_task(load_config(base).task)
    ref = train_setting(
        task, load_config(base + ["packing=off"]), setting, [0, 1], torch.device("cpu")
    )
    got = train_setting(
        task, load_config(base + [f"packing={packing}"]), setting, [0, 1], torch.device("cpu")
    )
    for a, b in zip(ref, got):
        assert np.allclose(a.curves["val_loss"], b.curves["val_loss"], rtol=2e-3, atol=2e-4)


def test_group_multipliers_as_a_grid_axis_are_labelled_values():
    from sweep.config import apply_overrides, load_config

    cfg = load_config(["+grid.optimizer.group_lr_mult=[[0.11,0.33,1.0],[1,1,1]]"])
    assert cfg.grid.extra == (
        ("optimizer.group_lr_mult", ("[0.11, 0.33, 1.0]", "[1.0, 1.0, 1.0]")),
    )
    assert apply_overrides(
        cfg, {"optimizer.group_lr_mult": "[0.11, 0.33, 1.0]"}
    ).optimizer.group_lr_mult == [0.11, 0.33, 1.0]


# --------------------------------------------------------------------------- 4. the data


def digits_info() -> dict[str, Any]:
    from sweep.config import load_config
    from sweep.tasks import build_task
    from sweep.tasks.summary import data_summary

    return {"data": data_summary(build_task(load_config([]).task)), "per_step": False}


def test_the_default_task_is_summarised_without_warnings():
    info = digits_info()
    lines = data_lines(info)
    assert lines[0].startswith("Class balance, training sequences: 1347 (0 10%")
    assert "validation: 450" in lines[0]
    assert lines[1].startswith("Inputs as the model sees them") and "0: 0.00" in lines[1]
    assert data_warnings(info) == []


def test_unscaled_inputs_and_unbalanced_validation_classes_are_warned_about():
    import dataclasses

    from sweep.config import load_config
    from sweep.tasks import build_task
    from sweep.tasks.summary import data_summary

    task = build_task(load_config([]).task)
    y_val = torch.where(
        torch.arange(len(task.y_val)) % 10 < 9, torch.zeros_like(task.y_val), task.y_val
    )
    raw = dataclasses.replace(task, x_train=task.x_train * 255, y_val=y_val)
    info = {"data": data_summary(raw, normalized=False)}
    warnings = data_warnings(info)
    assert len(warnings) == 2
    assert (
        "input features are far from standardised" in warnings[0]
        and "set task.normalize=true" in warnings[0]
    )
    assert (
        "validation classes are badly unbalanced" in warnings[1] and "class 0 holds" in warnings[1]
    )
    assert (
        data_warnings({"data": data_summary(raw, normalized=True)})[:1] != warnings[:1]
    )  # standardised: no input warning


def test_regression_targets_and_token_inputs_are_described():
    from sweep.config import load_config
    from sweep.tasks import build_task
    from sweep.tasks.summary import data_summary

    task = build_task(
        load_config(["task=adding", "task.n_train=64", "task.n_val=32", "task.length=10"]).task
    )
    lines = data_lines({"data": data_summary(task)})
    assert lines[0].startswith("Target scale: train mean") and "val mean" in lines[0]
    tokens = {"data": {"inputs": {"tokens": True, "vocab_size": 500}, "normalized": True}}
    assert "token ids (vocabulary of 500)" in data_lines(tokens)[0]
    assert data_warnings(tokens) == []


# --------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_real_runs_order_batch_sizes_2_8_32_by_fluctuation(tmp_path):
    """Digits, one lr, batch sizes 2, 8 and 32 (README "Reading the report" quotes a larger run
    of the same): the per-step spread orders the batch sizes as the per-step curves show, the
    epoch volatility puts both small batches above 32, and the verdict and figure say so."""
    from conftest import run_cli

    results = tmp_path / "results"
    p = run_cli(
        "run",
        "model.hidden_size=16",
        "model.layers=1",
        "epochs=12",
        "seeds=3",
        "grid.lr=[0.05]",
        "grid.clip=[null]",
        "grid.batch_size=[2,8,32]",
        "task.val_fraction=0.7",
        f"results_dir={results}",
        "study.name=fluct",
    )  # 30% of the sequences in training: fewer steps at batch size 2, the order as clear
    assert p.returncode == 0, p.stderr
    summary = pd.read_csv(results / "fluct" / "summary.csv").set_index("batch_size")
    cv, vol = summary["step_loss_cv"], summary["volatility"]
    assert cv[2] > cv[8] > cv[32]
    assert (
        summary.loc[2, "step_loss_cv_lo"] > summary.loc[32, "step_loss_cv_hi"]
    )  # beyond the seeds' spread
    assert vol[2] > vol[32] and vol[8] > vol[32]
    assert (results / "fluct" / "figures" / "volatility.png").stat().st_size > 10_000
    page = (results / "fluct" / "report.html").read_text()
    assert (
        "step_loss_cv, as a share of the epoch&#x27;s mean) falls as batch size grows in 1 of 1 slice"
        in page
    )


def test_a_users_model_groups_are_its_top_level_modules_in_order():
    from torch import nn

    from sweep.training.gradients import ParamGroups, optimizer_groups

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.GRU(3, 4, batch_first=True)
            self.readout = nn.Linear(4, 2)
            self.scale = nn.Parameter(torch.ones(1))

    model = Tagger()
    groups = ParamGroups.of(model, list(model.parameters()))
    assert groups.names == [
        "(own)",
        "encoder",
        "readout",
    ]  # model.named_parameters() order: its own first
    made = optimizer_groups(groups, [0.5, 0.1, 1.0], lr=0.2)
    assert [(g["group"], len(g["params"]), g["lr"]) for g in made] == [
        ("(own)", 1, pytest.approx(0.1)),
        ("encoder", 4, pytest.approx(0.02)),
        ("readout", 2, pytest.approx(0.2)),
    ]
    with pytest.raises(ValueError, match="3 parameter groups \\(own\\), encoder, readout"):
        optimizer_groups(groups, [1.0, 1.0], lr=0.2)
