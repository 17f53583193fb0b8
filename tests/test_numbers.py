"""CSV numbers (sweep.analysis.numbers): accuracies as the fractions they are, the rest to what
the data resolve, the frame in memory untouched."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sweep.analysis.numbers import csv_ready, decimals_for, significant, snap


def test_a_float32_accuracy_is_written_as_its_count_over_n_val():
    assert snap(float(np.float32(387 / 450)), 450) == 0.86
    assert str(snap(float(np.float32(364 / 370)), 370)) == "0.984"
    for n in (20, 370, 450, 1000, 4096):
        for k in range(0, n + 1, max(1, n // 97)):
            v = snap(float(np.float32(k / n)), n)
            assert round(v * n) == k and len(repr(v).split(".")[-1]) <= decimals_for(n)


def test_a_mean_over_runs_snaps_to_multiples_of_one_over_n_val_times_runs():
    runs = np.float32([364 / 370, 363 / 370, 364 / 370, 360 / 370])
    mean = float(np.mean(runs))
    v = snap(mean, 370 * 4)
    assert round(v * 370 * 4) == 364 + 363 + 364 + 360


def test_values_off_the_lattice_keep_six_digits_and_others_four():
    assert snap(0.123456789, 450) == 0.123457  # a per-step accuracy is no count of sequences
    assert significant(1.23456789) == 1.235 and significant(3.3333e-8) == 3.333e-08
    assert significant(0.0) == 0.0 and math.isnan(significant(math.nan))


def test_csv_ready_copies_and_leaves_axes_integers_and_grid_lrs_alone():
    df = pd.DataFrame(
        {
            "lr": [0.0316227766016838, 0.1],
            "seed": [0, 1],
            "best_acc": np.float32([387 / 450, 364 / 450]).astype(float),
            "grad_norm_p90": [1.23456789, np.nan],
            "largest_stable_lr": [0.0316227766016838, np.nan],
        }
    )
    out = csv_ready(df, ["lr"], 450)
    assert list(out["lr"]) == list(df["lr"]) and list(out["seed"]) == [0, 1]
    assert list(out["best_acc"]) == [0.86, 0.809] and out["grad_norm_p90"][0] == 1.235
    assert out["largest_stable_lr"][0] == 0.0316227766016838
    assert df["best_acc"][0] != 0.86  # the frame in memory keeps full precision
    text = out.to_csv(index=False)
    assert "0.8600000" not in text and "0.86," in text


def test_summary_means_use_the_rows_run_count_and_unknown_n_val_keeps_six_digits():
    s = pd.DataFrame(
        {
            "lr": [0.1],
            "n_runs": [4],
            "mean_best_acc": [float(np.float32(364 / 370))],
            "mean_best_acc_lo": [0.98378378],
            "mean_best_acc_hi": [0.98378378],
        }
    )
    out = csv_ready(s, ["lr"], 370, runs="n_runs")
    assert (
        out["mean_best_acc"][0] == pytest.approx(364 / 370, abs=1e-4)
        and round(out["mean_best_acc"][0] * 1480) == 1456
    )
    assert csv_ready(s, ["lr"], None, runs="n_runs")["mean_best_acc"][0] == 0.983784
