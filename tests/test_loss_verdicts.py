"""A study whose calls read the loss (issue 27): the verdict, the recommendation and the slices
speak in loss units, lower is better, and say which curve the calls came from."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sweep.analysis.conclusions import compute_verdicts
from sweep.analysis.metric import ACCURACY, MetricChoice
from sweep.analysis.recommendation import recommend
from sweep.analysis.run_rows import RUN_COLUMNS
from sweep.analysis.tables import SUMMARY_COLUMNS, Tables, summary_table
from sweep.analysis.verdicts import loss_sensitivity, slice_verdicts

AXES = ["lr", "clip", "batch_size"]
NOTE = "Calls from the training loss: no validation set."


def _row(lr, clip, seed, best_loss, collapsed=False, never=False):
    row = {c: None for c in RUN_COLUMNS}
    row.update(
        lr=lr,
        clip=clip,
        batch_size=32,
        seed=seed,
        best_acc=math.nan,
        final_acc=math.nan,
        best_epoch=3,
        collapsed=collapsed,
        collapse_epoch=6 if collapsed else None,
        collapse_mode="diverged" if collapsed else "",
        never_learned=never,
        spikes=0,
        nonfinite="",
        epochs_run=10,
        grad_norm_p90=1.0,
        grad_norm_max=2.0,
        seconds=1.0,
        outcome="collapsed" if collapsed else ("never_learned" if never else "stable"),
        undecided=False,
        noise_floor=math.nan,
        metric="train_loss",
        best_loss=best_loss,
        final_loss=best_loss * (3 if collapsed else 1),
    )
    return row


def _tables():
    rows = []
    for seed in range(3):
        rows.append(_row(0.01, None, seed, 1.00 + 0.01 * seed))  # slow: higher loss
        rows.append(_row(0.1, None, seed, 0.50 + 0.01 * seed))  # the best loss
        rows.append(_row(1.0, None, seed, 0.40, collapsed=True))  # collapses
        rows.append(_row(1.0, 1.0, seed, 0.55 + 0.01 * seed))  # clipping keeps it
        rows.append(_row(0.1, 1.0, seed, 0.60 + 0.01 * seed))
        rows.append(_row(0.01, 1.0, seed, 1.10 + 0.01 * seed))
    runs = pd.DataFrame(rows, columns=AXES + RUN_COLUMNS)
    summary = summary_table(runs, AXES, 0.0)
    return Tables(
        runs=runs,
        curves=pd.DataFrame(columns=AXES + ["seed", "epoch", "clip_fraction"]),
        summary=summary,
        axes=AXES,
        chance=0.0,
        meta={"task": {"chance_loss": 2.3}, "config": {"epochs": 10}, "detect": {}},
        metric=MetricChoice("train_loss", NOTE),
    )


def test_the_summary_of_a_loss_study_has_a_mean_best_loss_and_no_accuracy():
    s = _tables().summary
    assert set(SUMMARY_COLUMNS) <= set(s.columns)
    row = s[(s["lr"] == 0.1) & s["clip"].isna()].iloc[0]
    assert row["mean_best_loss"] == pytest.approx(0.51)
    assert row["mean_best_loss_lo"] < 0.51 < row["mean_best_loss_hi"]
    assert math.isnan(row["mean_best_acc"])


def test_the_recommendation_is_the_lowest_loss_without_a_collapse_in_loss_units():
    t = _tables()
    score = t.metric.score
    rec = recommend(t.summary, AXES, runs=t.runs, score=score)
    # unclipped, lr 0.1 (0.51) lies above its slice's safe lr (lr 1 collapses); clipped at 1,
    # nothing collapsed, and lr 1 has the lowest loss there (0.56)
    assert rec.setting == {"lr": 1.0, "clip": 1.0, "batch_size": 32}
    assert rec.mean_best_acc == pytest.approx(0.56)  # the loss, back in its units
    assert rec.mean_best_acc_lo < 0.56 < rec.mean_best_acc_hi
    assert rec.text(AXES).startswith(
        "lr=1, clip 1, batch size 32: mean best training loss 0.56 (95% CI"
    )
    assert rec.excluded_best[1] == pytest.approx(0.51)  # lower, but above its safe lr
    # the same table scored as accuracy would pick nothing (no accuracy at all)
    assert recommend(t.summary, AXES, runs=t.runs, score=ACCURACY) is None


def test_slices_of_a_loss_study_name_the_lowest_loss_and_wortsmans_loss_sensitivity():
    t = _tables()
    slices = slice_verdicts(t.summary, AXES, 0.0, score=t.metric.score, reference=2.3)
    unclipped = slices[slices["clip"].isna()].iloc[0]
    assert unclipped["best_lr"] == 1.0  # its mean best loss is lowest, though it collapsed later
    assert unclipped["best_mean_best_loss"] == pytest.approx(0.40)
    assert math.isnan(unclipped["best_mean_best_acc"])
    assert unclipped["lr_sensitivity"] == pytest.approx(loss_sensitivity([1.01, 0.51, 0.40], 2.3))


def test_loss_sensitivity_caps_a_diverged_lr_at_the_reference():
    assert loss_sensitivity([0.5, 0.5], 2.0) == 0.0
    assert loss_sensitivity([0.5, 10.0], 2.0) == pytest.approx((0 + 1.5) / 2)
    assert loss_sensitivity([0.5, 10.0], None) == pytest.approx((0 + 9.5) / 2)
    assert math.isnan(loss_sensitivity([math.nan], 2.0))


def test_the_verdict_of_a_loss_study_says_which_curve_and_speaks_in_loss():
    v = compute_verdicts(_tables())
    text = v.text("s")
    assert NOTE in text
    assert "Recommended: lr=1, clip 1, batch size 32: mean best training loss 0.56" in text
    assert "accuracy" not in text.replace("the accuracy", "")
    assert "nan" not in text
