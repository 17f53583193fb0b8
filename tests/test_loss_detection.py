"""Calls from the loss alone (issue 27, sweep.analysis.loss_detection): hand-made curves with known
answers, the reports' own logs, and seeded simulations of what noise alone does and of the power
against a jump (`python benchmarks/bench_loss_detection.py` prints the full tables of
docs/statistics.md, "Calls from the loss").

Noise is simulated on the log of the loss (a loss's noise is roughly proportional to it):
normal, or Student-t with 3 degrees of freedom scaled to the same robust sd (1.4826 x the median
absolute value), whose outlying epochs are common.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sweep.analysis.detection import OUTCOMES
from sweep.analysis.loss_detection import (
    LossVerdict,
    detect_loss_run,
    loss_learned,
    loss_reference,
    nonfinite_start,
)
from sweep.config import DetectConfig
from sweep.trainers.logs import read_log

D = DetectConfig()
NAN, INF = math.nan, math.inf
LOGS = Path(__file__).parent / "data" / "trainer_logs"
T3_SCALE = 1.0 / (1.4826 * 0.7649)  # Student-t(3): its median |t| is 0.7649


def noise(rng: np.random.Generator, kind: str, sigma: float, shape) -> np.ndarray:
    if kind == "normal":
        return sigma * rng.standard_normal(shape)
    return sigma * T3_SCALE * rng.standard_t(3, shape)


def collapse_curve(seed: int = 0, jump_to: float = 1.8, sigma: float = 0.02) -> np.ndarray:
    """Falls from 2.3 to 0.4 in 6 epochs, holds 14, jumps to `jump_to` for the last 10."""
    rng = np.random.default_rng(seed)
    level = np.r_[np.geomspace(2.3, 0.4, 6), np.full(14, 0.4), np.full(10, jump_to)]
    return level * np.exp(sigma * rng.standard_normal(level.size))


# ------------------------------------------------------------------------------ hand-made curves


def test_a_loss_that_jumps_and_never_recovers_is_diverged_at_the_jump():
    v = detect_loss_run(collapse_curve(), detect=D, chance_loss=2.3)
    assert isinstance(v, LossVerdict) and v.outcome in OUTCOMES
    assert v.collapsed and v.collapse_mode == "diverged" and v.collapse_epoch == 21
    assert v.witness == "loss" and v.outcome == "collapsed" and not v.never_learned
    assert v.reference == 2.3 and v.best_epoch <= 20 and v.best_loss < 0.45
    assert v.threshold == pytest.approx(v.best_loss + 0.5 * (2.3 - v.best_loss))
    assert v.stretch_bound < v.stretch_level and v.stretch_bound > v.threshold
    assert 0.01 < v.noise < 0.05 and v.scale == "log"  # the curve's 2% jitter, roughly


def test_without_chance_loss_the_reference_is_the_first_logged_loss():
    curve = collapse_curve()
    assert loss_reference(curve) == curve[0] and loss_reference(curve, 2.3) == 2.3
    assert loss_reference([NAN, 1.5, 1.0]) == 1.5 and math.isnan(loss_reference([NAN]))
    v = detect_loss_run(curve, detect=D)
    assert v.collapsed and v.reference == curve[0] and v.collapse_epoch == 21


def test_a_spike_that_recovers_is_counted_not_a_collapse():
    curve = collapse_curve(jump_to=0.4)
    curve[24:26] *= 5.0  # two epochs far up, then back
    v = detect_loss_run(curve, detect=D, chance_loss=2.3)
    assert v.outcome == "stable" and not v.collapsed and v.spikes == 2


def test_a_jump_that_stays_below_the_threshold_is_stable():
    v = detect_loss_run(collapse_curve(jump_to=0.9), detect=D, chance_loss=2.3)  # threshold ~1.35
    assert v.outcome == "stable" and v.collapse_epoch is None


def test_the_end_shorter_than_patience_is_not_a_collapse():
    curve = collapse_curve()[:22]  # only 2 epochs after the jump
    assert not detect_loss_run(curve, detect=D, chance_loss=2.3).collapsed


def test_a_flat_loss_never_learned():
    rng = np.random.default_rng(1)
    flat = 2.3 * np.exp(0.02 * rng.standard_normal(40))
    for chance_loss in (2.3, None):
        v = detect_loss_run(flat, detect=D, chance_loss=chance_loss)
        assert v.never_learned and v.outcome == "never_learned" and not v.collapsed
        assert not loss_learned(flat, detect=D, chance_loss=chance_loss)
    assert loss_learned(collapse_curve(), detect=D, chance_loss=2.3)


def test_a_gain_smaller_than_loss_min_gain_is_not_learning():
    curve = np.r_[np.full(5, 1.0), np.full(25, 0.97)]  # noise-free, 3% below the reference
    assert not loss_learned(curve, detect=D, chance_loss=1.0)
    assert loss_learned(curve, detect=DetectConfig(loss_min_gain=0.02), chance_loss=1.0)


def test_nonfinite_comes_from_the_trainer_an_inf_or_a_nan_to_the_end():
    assert nonfinite_start([1.0, 0.5, INF, 0.4]) == 3
    assert nonfinite_start([1.0, 0.5, NAN, 0.4]) is None  # a missing measurement
    assert nonfinite_start([1.0, 0.5, 0.4, NAN, NAN]) == 4
    assert nonfinite_start([NAN]) == 1 and nonfinite_start([]) is None
    v = detect_loss_run([1.0, 0.5, 0.4, NAN, NAN], detect=D)
    assert v.collapsed and v.collapse_mode == "nonfinite" and v.collapse_epoch == 4
    assert v.best_loss == 0.4 and v.best_epoch == 3 and math.isnan(v.final_loss)
    v = detect_loss_run([1.0, 0.9, 0.8], detect=D, nonfinite_epoch=2)  # the trainer saw it
    assert v.collapse_mode == "nonfinite" and v.collapse_epoch == 2


def test_a_loss_at_or_below_zero_is_read_in_loss_units():
    rng = np.random.default_rng(2)
    level = np.r_[np.linspace(0.0, -3.0, 6), np.full(14, -3.0), np.full(10, -0.5)]
    v = detect_loss_run(level + 0.03 * rng.standard_normal(30), detect=D)
    assert v.scale == "linear" and v.collapsed and v.collapse_epoch == 21


def test_logged_item_noise_widens_the_bounds():
    """The same curve with a large spread of the items behind each epoch's loss (sd 3 x the
    loss over 4 items: 150% per epoch) cannot confirm a modest rise; with 10,000 items it can."""
    rng = np.random.default_rng(3)
    level = np.r_[np.geomspace(2.3, 0.4, 6), np.full(14, 0.4), np.full(10, 1.5)]
    curve = level * np.exp(0.02 * rng.standard_normal(30))
    sd = 3.0 * curve
    assert detect_loss_run(curve, detect=D, chance_loss=2.3, loss_sd=sd, n_items=10_000).collapsed
    noisy = detect_loss_run(curve, detect=D, chance_loss=2.3, loss_sd=sd, n_items=4)
    assert not noisy.collapsed and noisy.noise > 1.0


# ------------------------------------------------------------------------------ the reports' logs

# Each log of tests/data/trainer_logs that holds a loss, with the call its loss gets: the blow-ups
# are flagged at the epoch their loss turned inf/NaN (the first epoch for the two whose first
# epoch already did), the healthy ones are not called collapsed.
REPORT_LOGS = {
    "keras_csvlogger.csv": ("stable", None),
    "keras_terminate_on_nan.csv": ("collapsed", 4),
    "keras_terminate_on_nan_first_epoch.csv": ("collapsed", 1),
    "lightning_metrics.csv": (None, None),  # 3 epochs: learned or not, no collapse
    "lightning_metrics_before_validation.csv": (None, None),
    "lightning_metrics_inf_stop.csv": ("collapsed", 1),
    "lightning_metrics_mid_epoch.csv": (None, None),
    "lightning_metrics_resumed.csv": ("stable", None),
}


def test_every_log_with_a_loss_is_checked():
    with_loss = {
        p.name
        for p in LOGS.glob("*.csv")
        if any("train_loss" in e or "val_loss" in e for e in read_log(p).epochs)
    }
    assert with_loss == set(REPORT_LOGS), "give each new log in tests/data its expected call"


@pytest.mark.parametrize("name", sorted(REPORT_LOGS))
def test_the_reports_logs_are_flagged_at_their_jump_epochs(name):
    outcome, epoch = REPORT_LOGS[name]
    log = read_log(LOGS / name)
    for column in ("val_loss", "train_loss"):
        loss = [e.get(column, NAN) for e in log.epochs]
        if not np.isfinite(loss).any() and not np.isinf(loss).any() and outcome is None:
            continue
        v = detect_loss_run(loss, detect=D)
        if outcome is None:
            assert not v.collapsed, (column, v)
        else:
            assert (v.outcome, v.collapse_epoch) == (outcome, epoch), (column, v)
            if outcome == "collapsed":
                assert v.collapse_mode == "nonfinite"


# ------------------------------------------------------------------------------ noise alone


def null_levels(scenario: str, epochs: int) -> np.ndarray:
    """log(loss) of a training that learns nothing, around the loss of knowing nothing (1.0)."""
    t = np.arange(epochs)
    if scenario == "flat":
        return np.zeros(epochs)
    if scenario == "fast fall":  # falls to the null level within two epochs, then stays
        return np.r_[np.log([1.6, 1.15]), np.zeros(epochs - 2)]
    if scenario == "drift up":  # memorising noise: +8% over the run
        return np.log1p(0.08 * t / epochs)
    return np.log1p(0.025 * (1 + np.sin(2 * np.pi * t / max(epochs / 2, 2))))  # wandering


SCENARIOS = ("flat", "fast fall", "drift up", "wander")


@pytest.mark.parametrize("kind", ["normal", "t3"])
@pytest.mark.parametrize("epochs", [10, 30, 100])
def test_noise_alone_is_almost_never_called_learned_or_collapsed(epochs, kind):
    """Every scenario of null_levels at per-epoch noise 0.5%, 2% and 10%, with the loss of knowing
    nothing known (1.0) and without (the first logged loss; a fast fall from an untrained first
    epoch then counts as learning, as the rule says, but never as a collapse). 200 curves per
    cell, 4,800 per test. Measured with 2,000 per cell (bench_loss_detection.py): see
    docs/statistics.md; bounded here at 1% per cell and 0.3% pooled for collapses, 1.5% per cell
    for a false "learned"."""
    rng = np.random.default_rng(27_500 + epochs + len(kind))
    collapsed = []
    for scenario in SCENARIOS:
        for sigma in (0.005, 0.02, 0.1):
            curves = np.exp(null_levels(scenario, epochs) + noise(rng, kind, sigma, (200, epochs)))
            for chance_loss in (1.0, None):
                v = [detect_loss_run(c, detect=D, chance_loss=chance_loss) for c in curves]
                rate = np.mean([r.collapsed for r in v])
                assert rate <= 0.01, (scenario, sigma, chance_loss, rate)
                collapsed.append(rate)
                if chance_loss is not None or scenario != "fast fall":
                    learned = np.mean([not r.never_learned for r in v])
                    assert learned <= 0.015, (scenario, sigma, chance_loss, learned)
    assert np.mean(collapsed) <= 0.003


# ------------------------------------------------------------------------------ power


@pytest.mark.parametrize("kind", ["normal", "t3"])
@pytest.mark.parametrize("stretch", [3, 6, 12])
def test_a_jump_3_noise_sds_past_the_threshold_is_caught(stretch, kind):
    """Learns from 1.0 to 0.4 in 5 epochs, holds 15, then its last `stretch` epochs sit 3 noise
    sds above the threshold (0.7) on the log scale: caught in >= 90% (normal noise), >= 80% (t3
    noise with 3 epochs: one outlying epoch in three weighs; measured 84-88%). 300 curves each."""
    rng = np.random.default_rng(27_600 + stretch + len(kind))
    sigma = 0.05
    level = np.r_[np.log(np.geomspace(1.0, 0.4, 6)[1:]), np.full(15, np.log(0.4))]
    level = np.r_[level, np.full(stretch, np.log(0.7) + 3 * sigma)]
    curves = np.exp(level + noise(rng, kind, sigma, (300, level.size)))
    rate = np.mean([detect_loss_run(c, detect=D, chance_loss=1.0).collapsed for c in curves])
    assert rate >= (0.80 if (kind, stretch) == ("t3", 3) else 0.90)


# ------------------------------------------------------------------------------ short curves

# examples/lightning_script at lr 1 without clipping, seed 0, 8 epochs (tests/test_detection.py):
# its val loss fell 45% in one epoch, held two, then rose 2.4x; chance_loss ln 10 = 2.303.
LIGHTNING_LOSS = [1.877012, 1.041263, 1.028461, 1.566092, 1.904336, 2.611927, 2.521459, 2.420434]


def test_a_short_loss_that_learned_for_two_epochs_then_rose_is_learned_and_diverged():
    """The curve's second differences are its fall, peak and rise (robust sd 0.17 on the log
    scale, 0.34 at its 90% bound: the loss looked never learned). Its lowest level is now the
    median of 3 epochs (a curve under 15 epochs holds no level of 5 after a 2-epoch dip), and the
    stretch is judged with its own epochs' scatter (0.12 at its bound)."""
    assert loss_learned(LIGHTNING_LOSS, detect=D, chance_loss=2.303)
    v = detect_loss_run(LIGHTNING_LOSS, detect=D, chance_loss=2.303)
    assert v.outcome == "collapsed" and v.collapse_mode == "diverged" and v.witness == "loss"
    assert v.best_epoch == 3 and v.collapse_epoch == 5  # 1.904: the first above 1.666
    assert v.threshold == pytest.approx(1.028461 + 0.5 * (2.303 - 1.028461))
    assert v.threshold < v.stretch_bound < v.stretch_level and v.noise < 0.15


def test_a_short_loss_reads_its_level_from_3_epochs_and_a_long_one_from_5():
    dip = [2.3, 1.0, 1.0] + [2.3] * 11  # noise-free: 2 epochs at 1.0 (43% of chance), 14 epochs
    assert loss_learned(dip, detect=D, chance_loss=2.3)
    assert not loss_learned(dip + [2.3], detect=D, chance_loss=2.3)  # 15 epochs: 5 needed
