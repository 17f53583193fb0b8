"""Detection on hand-made curves with known answers (docs/architecture.md, "Definitions")."""

import math

import pytest

from sweep.analysis.detection import best_accuracy, count_spikes, detect_run, final_stretch_start
from sweep.config import DetectConfig

NAN = math.nan
D = DetectConfig()  # drop 0.5, patience 3, min_gain 0.05, spike_factor 1.5, constant_frac 0.95
CHANCE = 0.1


def run(acc, loss=None, top=None, nonfinite_epoch=None, chance=CHANCE, detect=D):
    loss = loss if loss is not None else [1.0] * len(acc)
    top = top if top is not None else [0.2] * len(acc)
    return detect_run(acc, loss, top, nonfinite_epoch, chance, detect)


def test_healthy_run_does_not_collapse():
    v = run([0.3, 0.6, 0.8, 0.9, 0.9, 0.91])
    assert not v.collapsed and v.collapse_mode == "" and v.collapse_epoch is None
    assert v.best_acc == 0.91 and v.best_epoch == 6 and v.final_acc == 0.91
    assert not v.never_learned and v.spikes == 0


def test_flat_at_chance_is_never_learned_not_collapsed():
    v = run([0.1, 0.11, 0.1, 0.12, 0.1])
    assert v.never_learned and not v.collapsed and v.collapse_mode == ""


def test_nan_at_epoch_k_is_nonfinite_collapse_at_k():
    acc = [0.3, 0.6, 0.8, NAN]
    v = run(acc, loss=[1.0, 0.8, 0.5, NAN], nonfinite_epoch=4)
    assert v.collapsed and v.collapse_mode == "nonfinite" and v.collapse_epoch == 4
    assert v.best_acc == 0.8 and v.best_epoch == 3 and math.isnan(v.final_acc)


def test_nan_in_first_epoch_scores_chance_as_best():
    v = run([NAN], loss=[NAN], nonfinite_epoch=1)
    assert v.collapsed and v.collapse_mode == "nonfinite" and v.collapse_epoch == 1
    assert v.best_acc == CHANCE and v.best_epoch is None and not v.never_learned


def test_drop_that_never_recovers_is_diverged_from_first_epoch_below_threshold():
    # best 0.9 -> threshold 0.1 + 0.5 * 0.8 = 0.5; below from epoch 5 to the end (4 epochs)
    v = run([0.5, 0.8, 0.9, 0.7, 0.3, 0.2, 0.2, 0.25])
    assert v.collapsed and v.collapse_mode == "diverged" and v.collapse_epoch == 5
    assert v.best_acc == 0.9 and v.best_epoch == 3 and v.final_acc == 0.25


def test_dip_that_recovers_is_not_collapse():
    v = run([0.5, 0.8, 0.9, 0.2, 0.2, 0.2, 0.85, 0.9])
    assert not v.collapsed


def test_dip_at_the_very_end_shorter_than_patience_is_not_collapse():
    v = run([0.5, 0.8, 0.9, 0.9, 0.2, 0.2])  # 2 epochs below, patience 3
    assert not v.collapsed and v.collapse_epoch is None


def test_dip_at_the_end_exactly_patience_long_is_collapse():
    v = run([0.5, 0.8, 0.9, 0.9, 0.2, 0.2, 0.2])
    assert v.collapsed and v.collapse_epoch == 5


def test_constant_output_is_a_diverged_run_predicting_one_class():
    top = [0.2, 0.15, 0.12, 0.5, 0.99, 1.0, 1.0]
    v = run([0.5, 0.8, 0.9, 0.4, 0.1, 0.1, 0.1], top=top)
    assert v.collapsed and v.collapse_mode == "constant_output" and v.collapse_epoch == 4


def test_constant_output_not_claimed_for_regression_without_class_predictions():
    v = run([0.5, 0.8, 0.9, 0.1, 0.1, 0.1], top=[NAN] * 6)
    assert v.collapse_mode == "diverged"


def test_spike_that_recovers_is_counted_not_collapse():
    loss = [1.0, 0.6, 0.5, 2.0, 0.45, 0.4]  # epoch 4 exceeds 1.5 x 0.5
    v = run([0.3, 0.6, 0.7, 0.4, 0.75, 0.8], loss=loss)
    assert v.spikes == 1 and not v.collapsed


def test_spike_stretch_not_recovered_is_not_counted():
    assert count_spikes([1.0, 0.5, 2.0, 3.0], 1.5) == 0
    assert count_spikes([1.0, 0.5, 2.0, 3.0, 0.5], 1.5) == 2


def test_final_stretch_treats_nan_as_below():
    assert final_stretch_start([0.9, 0.8, NAN, 0.1], 0.5) == 3
    assert final_stretch_start([0.9, 0.8], 0.5) is None


def test_best_accuracy_picks_first_epoch_of_maximum_and_ignores_nan():
    assert best_accuracy([0.2, NAN, 0.7, 0.7, 0.5], 0.1) == (0.7, 3)


@pytest.mark.parametrize("drop,expected", [(0.5, True), (0.9, False)])
def test_drop_threshold_is_configurable(drop, expected):
    detect = DetectConfig(drop=drop)
    # best 0.9, chance 0.1: drop 0.5 -> 0.5 threshold (0.3 is below); drop 0.9 -> 0.18 (0.3 is above)
    v = run([0.9, 0.3, 0.3, 0.3], detect=detect)
    assert v.collapsed is expected


def test_regression_chance_level_is_respected():
    # chance 0.63 (adding problem): best 0.66 is below chance + min_gain -> never learned
    v = run([0.6, 0.66, 0.5, 0.5, 0.5], chance=0.63)
    assert v.never_learned and not v.collapsed
