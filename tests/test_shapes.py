"""Curve shapes (sweep/shapes.py): loss jumps that never recover, and training-loss volatility.

Seeded simulations: noise is multiplicative (added to the log loss), as in real loss curves.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from sweep.analysis.shapes.curves import (
    DEFAULT_JUMP_Z,
    LossJump,
    loss_jump,
    loss_jumps,
    noise_scale,
    usable_log_prefix,
    volatility,
    warmup_epochs,
)

NAN = math.nan


# ---------------------------------------------------------------------------------------------
# Simulated curves


def decaying_log_curve(n: int) -> np.ndarray:
    """Log of a loss decaying exponentially from 2.3 to a floor of 0.3 (time constant n/8)."""
    t = np.arange(n)
    return np.log(0.3 + 2.0 * np.exp(-t / (n / 8)))


def trend(kind: str, n: int) -> np.ndarray:
    """Noise-free log-loss trend: flat, decay to a floor, or decay then a slow upturn
    (overfitting: +30% spread evenly over the last 40% of training)."""
    if kind == "flat":
        return np.zeros(n)
    base = decaying_log_curve(n)
    if kind == "decay":
        return base
    assert kind == "upturn"
    start = int(0.6 * n)
    t = np.arange(n)
    return base + np.where(t >= start, math.log(1.3) * (t - start) / (n - 1 - start), 0.0)


def noisy(
    rng: np.random.Generator, log_trend: np.ndarray, sigma: float, reps: int, noise: str = "normal"
) -> np.ndarray:
    """`reps` curves (rows): exp(trend + sigma * noise), noise standard normal or Student-t(3)."""
    shape = (reps, log_trend.size)
    e = rng.standard_normal(shape) if noise == "normal" else rng.standard_t(3, shape)
    return np.exp(log_trend + sigma * e)


def user_curve(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """The reported run: 2048 epochs, val loss settles at 0.278, jumps to 0.337 at epoch 934 and
    stays there to the end; multiplicative noise of sd `sigma` throughout."""
    n, jump_index = 2048, 933  # epoch 934, counted from 1
    t = np.arange(n)
    level = np.where(t < jump_index, 0.278 + (2.3 - 0.278) * np.exp(-t / 60.0), 0.337)
    return level * np.exp(sigma * rng.standard_normal(n))


# ---------------------------------------------------------------------------------------------
# loss_jump: the user's report


@pytest.mark.parametrize("sigma", [0.005, 0.0075, 0.01])
def test_user_curve_jump_is_caught_at_epoch_934(sigma):
    rng = np.random.default_rng(934)
    for _ in range(10):
        jump = loss_jump(user_curve(rng, sigma))
        assert jump is not None
        assert abs(jump.epoch - 934) <= 2
        assert jump.after == pytest.approx(0.337, rel=0.01)
        assert 0.278 * 0.95 < jump.before <= 0.278 * 1.01  # the lowest epoch: a little under
        assert 1.19 < jump.ratio < 1.28  # ~1.21 between typical levels, a bit more to the lowest
        assert jump.z > DEFAULT_JUMP_Z


# ---------------------------------------------------------------------------------------------
# loss_jump: noise alone

FALSE_ALARM_SCENARIOS = [
    # (trend, epochs, noise sd, noise distribution)
    ("flat", 20, 0.05, "normal"),
    ("flat", 100, 0.01, "normal"),
    ("flat", 500, 0.02, "normal"),
    ("flat", 500, 0.05, "normal"),
    ("decay", 20, 0.02, "normal"),
    ("decay", 100, 0.02, "normal"),
    ("decay", 500, 0.05, "normal"),
    ("upturn", 20, 0.05, "normal"),  # +30% over 8 epochs: ~3.7% a step, under the 5% noise
    ("upturn", 100, 0.01, "normal"),
    ("upturn", 500, 0.02, "normal"),
    ("flat", 100, 0.02, "t3"),
    ("flat", 500, 0.05, "t3"),
    ("decay", 500, 0.02, "t3"),
    ("upturn", 20, 0.05, "t3"),
    ("upturn", 500, 0.05, "t3"),
]


@pytest.mark.parametrize("kind,n,sigma,noise", FALSE_ALARM_SCENARIOS)
def test_noise_alone_false_alarm_rate_is_at_most_1_percent(kind, n, sigma, noise):
    rng = np.random.default_rng([n, int(sigma * 1000), len(kind), len(noise)])
    curves = noisy(rng, trend(kind, n), sigma, 10_000, noise)
    rate = np.mean([jump is not None for jump in loss_jumps(curves)])
    assert rate <= 0.01, f"{kind} n={n} sigma={sigma} {noise}: false alarms {rate:.2%}"


def test_loss_jumps_equals_loss_jump_row_by_row():
    """The vectorised batch gives loss_jump's answers, rows with NaN/inf/<= 0 included; a low
    z makes some rows report jumps so that found jumps are compared too."""
    rng = np.random.default_rng(7)
    curves = noisy(rng, trend("upturn", 40), 0.05, 600, "t3")
    curves[::37, 25] = NAN
    curves[5::53, 3] = math.inf
    curves[9::71, 30] = -1.0
    batch = loss_jumps(curves, z=3.0)
    one_by_one = [loss_jump(row, z=3.0) for row in curves]
    assert batch == one_by_one
    assert sum(jump is not None for jump in batch) >= 5


# ---------------------------------------------------------------------------------------------
# loss_jump: shapes that are not jumps, and power


@pytest.mark.parametrize("length", [1, 2, 3])
def test_spikes_that_recover_are_not_jumps(length):
    rng = np.random.default_rng(length)
    n = 100
    base = trend("decay", n)
    found = 0
    for _ in range(500):
        log_loss = base + 0.01 * rng.standard_normal(n)
        start = int(rng.integers(10, n - length - 4))  # back to the trend for >= 4 epochs
        log_loss[start : start + length] += math.log(2.0)
        found += loss_jump(np.exp(log_loss)) is not None
    assert found == 0


def test_noise_free_spike_is_not_a_jump():
    loss = np.full(50, 0.5)
    loss[20:23] = 1.0
    assert loss_jump(loss) is None


def test_return_from_a_dip_is_not_a_jump():
    """A dip of 3 epochs, then back to the level: the rise out of the dip is no jump."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        log_loss = trend("flat", 80) + 0.01 * rng.standard_normal(80)
        log_loss[50:53] += math.log(0.7)
        assert loss_jump(np.exp(log_loss)) is None


@pytest.mark.parametrize("n", [100, 500])
def test_slow_upturn_is_not_a_jump(n):
    """Overfitting: +30% spread over the last 40% of training; each step is below the noise."""
    rng = np.random.default_rng(n)
    curves = noisy(rng, trend("upturn", n), 0.01, 1000)
    assert all(jump is None for jump in loss_jumps(curves))
    assert loss_jump(np.exp(trend("upturn", n))) is None  # nor without noise


def test_power_20_percent_jump_for_the_last_30_percent_with_1_percent_noise():
    rng = np.random.default_rng(2020)
    n, jump_index = 100, 70  # epochs 71..100 elevated
    log_trend = trend("decay", n) + np.where(np.arange(n) >= jump_index, math.log(1.2), 0.0)
    jumps = loss_jumps(noisy(rng, log_trend, 0.01, 1000))
    caught = [j for j in jumps if j is not None and abs(j.epoch - (jump_index + 1)) <= 2]
    assert len(caught) >= 990
    ratios = np.array([j.ratio for j in caught])
    assert 1.15 < np.median(ratios) < 1.30  # ~1.2; the trend still falls a little at epoch 70


# ---------------------------------------------------------------------------------------------
# loss_jump: the rule's parts on hand-made curves


def step_curve(n: int, at: int, rise: float, wiggle: float = 0.002) -> np.ndarray:
    """Loss 0.5 with a tiny deterministic alternating wiggle, x rise from 0-based index `at`."""
    sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    loss = 0.5 * np.exp(wiggle * sign)
    loss[at:] *= rise
    return loss


def test_clean_step_reports_its_fields():
    jump = loss_jump(step_curve(40, 20, 1.3))
    assert isinstance(jump, LossJump)
    assert jump.epoch == 21
    assert jump.before == pytest.approx(0.5 * math.exp(-0.002))
    assert jump.after == pytest.approx(0.65, rel=0.005)
    assert jump.ratio == pytest.approx(jump.after / jump.before)
    assert jump.z > 40


def test_first_of_two_jumps_is_reported():
    loss = step_curve(60, 20, 1.3)
    loss[40:] *= 1.3
    assert loss_jump(loss).epoch == 21


def test_jump_completed_over_two_epochs_starts_at_its_first_epoch():
    loss = step_curve(40, 20, 1.3)
    loss[20] = 0.5 * 1.12
    assert loss_jump(loss).epoch == 21


def test_small_jump_on_ultra_smooth_curve_needs_min_rise():
    loss = step_curve(40, 20, 1.05, wiggle=1e-4)  # 5%: hundreds of noise sds, but small
    assert loss_jump(loss) is None
    assert loss_jump(loss, min_rise=1.03).epoch == 21


def test_jump_needs_patience_epochs_to_the_end():
    assert loss_jump(step_curve(30, 28, 1.5)) is None  # 2 elevated epochs, patience 3
    assert loss_jump(step_curve(30, 27, 1.5)).epoch == 28
    assert loss_jump(step_curve(30, 28, 1.5), patience=2).epoch == 29


def test_jump_needs_min_before_epochs_of_history():
    assert loss_jump(step_curve(30, 4, 1.5)) is None  # 4 epochs before, min_before 5
    assert loss_jump(step_curve(30, 5, 1.5)).epoch == 6
    assert loss_jump(step_curve(30, 4, 1.5), min_before=4).epoch == 5


def test_jump_that_comes_back_late_is_not_a_jump():
    loss = step_curve(60, 20, 1.5)
    loss[55:] /= 1.5  # back to the old level for the last 5 epochs
    assert loss_jump(loss) is None


def test_jump_that_partly_recovers_but_stays_elevated_is_a_jump():
    loss = step_curve(60, 20, 1.5)
    loss[40:] /= 1.3  # settles +15% above the old level
    assert loss_jump(loss).epoch == 21


def test_jump_that_settles_barely_above_the_old_level_is_too_small_overall():
    """+30% for 3 epochs, then +6% to the end: never back, but the stretch's median is < +10%."""
    loss = step_curve(60, 20, 1.3)
    loss[23:] *= 1.06 / 1.3
    assert loss_jump(loss) is None
    assert loss_jump(loss, min_rise=1.05).epoch == 21


def test_jump_small_against_the_noise_is_not_reported():
    """+15% on a curve with 5% noise: 3 noise sds, within what noise does."""
    rng = np.random.default_rng(15)
    log_trend = trend("flat", 100) + np.where(np.arange(100) >= 70, math.log(1.15), 0.0)
    jumps = loss_jumps(noisy(rng, log_trend, 0.05, 200))
    assert sum(j is not None for j in jumps) <= 2


# ---------------------------------------------------------------------------------------------
# loss_jump: bad values and bad parameters


def test_nonfinite_values_end_the_curve():
    loss = step_curve(60, 20, 1.3)
    with_nan_after = loss.copy()
    with_nan_after[45:] = NAN
    assert loss_jump(with_nan_after).epoch == 21  # judged on epochs 1..45
    with_inf_before = loss.copy()
    with_inf_before[15] = math.inf
    assert loss_jump(with_inf_before) is None  # only epochs 1..15 are read
    with_zero = loss.copy()
    with_zero[10] = 0.0
    assert loss_jump(with_zero) is None


@pytest.mark.parametrize(
    "curve",
    [[], [NAN], [NAN] * 50, [math.inf, 1.0, 1.0], [0.5] * 3, [0.5] * 50, [None, 1.0], [-1.0] * 20],
)
def test_degenerate_curves_give_none_without_warnings(curve):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from log/median of bad values
        assert loss_jump(curve) is None


def test_usable_log_prefix_stops_at_first_bad_value():
    assert usable_log_prefix([1.0, math.e, NAN, 1.0]).tolist() == pytest.approx([0.0, 1.0])
    assert usable_log_prefix([]).size == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"z": 0},
        {"z": NAN},
        {"min_rise": 0.9},
        {"min_before": 3},
        {"min_before": 4.5},
        {"patience": 0},
    ],
)
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ValueError):
        loss_jump([1.0] * 20, **kwargs)


def test_loss_jumps_needs_a_2d_array():
    with pytest.raises(ValueError):
        loss_jumps([1.0] * 20)
    assert loss_jumps(np.ones((0, 20))) == []


def test_noise_scale_estimates_the_noise_sd_and_ignores_a_steady_trend():
    rng = np.random.default_rng(5)
    log_trend = np.linspace(0.0, -3.0, 4000)  # steady descent, 0.075% per epoch
    assert noise_scale(log_trend) == pytest.approx(0.0, abs=1e-12)
    assert noise_scale(log_trend + 0.02 * rng.standard_normal(4000)) == pytest.approx(
        0.02, rel=0.05
    )


# ---------------------------------------------------------------------------------------------
# volatility


def test_smooth_decreasing_curves_score_near_zero():
    t = np.arange(100)
    assert volatility(2.0 * 0.97**t) == pytest.approx(0.0, abs=1e-12)  # steady percentage
    assert volatility(0.1 + 2.0 * np.exp(-t / 30)) < 1e-3  # bending to a floor


def test_volatility_estimates_the_noise_sd():
    rng = np.random.default_rng(11)
    base = np.exp(decaying_log_curve(2000))
    for sigma in (0.005, 0.02, 0.05):
        assert volatility(base * np.exp(sigma * rng.standard_normal(2000))) == pytest.approx(
            sigma, rel=0.1
        )


def test_more_noise_scores_higher_monotonically():
    rng = np.random.default_rng(12)
    base = decaying_log_curve(100)
    eps = rng.standard_normal(100)
    scores = [
        volatility(np.exp(base + sigma * eps))
        for sigma in (0.0, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08)
    ]
    assert scores[0] < 1e-3
    assert all(a < b for a, b in zip(scores, scores[1:]))


def test_volatility_ranks_curves_by_noise_level():
    """Three 100-epoch runs with noise 1%, 2%, 4%: ranked right in >= 99% of simulations."""
    rng = np.random.default_rng(13)
    base = decaying_log_curve(100)
    right = 0
    for _ in range(1000):
        scores = [
            volatility(np.exp(base + sigma * rng.standard_normal(100)))
            for sigma in (0.01, 0.02, 0.04)
        ]
        right += scores[0] < scores[1] < scores[2]
    assert right >= 990


def test_warmup_is_skipped():
    rng = np.random.default_rng(14)
    loss = np.exp(decaying_log_curve(100))
    loss[:60] *= np.exp(0.3 * rng.standard_normal(60))  # wild first 60%: more than the median hides
    assert volatility(loss, warmup=0.6) < 1e-3
    assert volatility(loss, warmup=0) > 0.1
    assert volatility(loss, warmup=60) == volatility(loss, warmup=0.6)
    loss[:20] = np.exp(decaying_log_curve(100))[:20] * np.exp(0.3 * rng.standard_normal(20))
    assert volatility(loss) == volatility(loss, warmup=20)  # the default skips the first 20%


def test_volatility_is_nan_safe():
    rng = np.random.default_rng(16)
    loss = np.exp(decaying_log_curve(100) + 0.02 * rng.standard_normal(100))
    holed = loss.copy()
    holed[[40, 41, 70]] = [NAN, math.inf, -1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score = volatility(holed)
        assert math.isnan(volatility([NAN] * 50))
        assert math.isnan(volatility([]))
    assert score == pytest.approx(volatility(loss), rel=0.15)


def test_too_short_curves_give_nan():
    rng = np.random.default_rng(17)
    loss = np.exp(0.02 * rng.standard_normal(9))
    assert math.isnan(volatility(loss[:8]))  # 2 warm-up + 6 epochs: 4 second differences
    assert not math.isnan(volatility(loss))  # 2 warm-up + 7 epochs: 5 second differences
    # a NaN leaves too few usable triples of epochs
    holed = loss.copy()
    holed[5] = NAN
    assert math.isnan(volatility(holed))


@pytest.mark.parametrize(
    "n,warmup,skipped",
    [(100, 0.2, 20), (9, 0.2, 2), (3, 0.01, 1), (10, 0.0, 0), (10, 4, 4), (10, 40, 10)],
)
def test_warmup_epochs(n, warmup, skipped):
    assert warmup_epochs(n, warmup) == skipped


@pytest.mark.parametrize("warmup", [-1, 1.0, 1.5, -0.1, True])
def test_bad_warmup_raises(warmup):
    with pytest.raises(ValueError):
        volatility([1.0] * 20, warmup=warmup)
