import math

import pytest

from sweep.analysis.stats import mean_interval, wilson_interval

REFERENCE = {  # docs/architecture.md, "Definitions"
    (0, 5): (0.0, 0.4345),
    (1, 5): (0.0362, 0.6245),
    (2, 5): (0.1176, 0.7693),
    (5, 5): (0.5655, 1.0),
    (0, 10): (0.0, 0.2775),
    (3, 10): (0.1078, 0.6032),
    (7, 50): (0.0695, 0.2619),
}


@pytest.mark.parametrize("k,n", sorted(REFERENCE))
def test_wilson_interval_matches_reference_values(k, n):
    p, lo, hi = wilson_interval(k, n)
    assert p == pytest.approx(k / n)
    assert (round(lo, 4), round(hi, 4)) == REFERENCE[(k, n)]


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (3, 7), (50, 100)])
def test_wilson_interval_agrees_with_scipy(k, n):
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(method="wilson")
    _, lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-9)
    assert hi == pytest.approx(ci.high, abs=1e-9)


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError, match="k <= n"):
        wilson_interval(6, 5)


def test_wilson_interval_of_no_runs_is_uninformative():
    p, lo, hi = wilson_interval(0, 0)
    assert math.isnan(p) and (lo, hi) == (0.0, 1.0)


def test_mean_interval_student_t_known_values():
    # mean 0.5, sd 0.1, n = 4: half-width t(0.975, 3) * 0.1 / 2 = 3.182446 * 0.05
    values = [0.4, 0.5, 0.5, 0.6]
    sd = math.sqrt(sum((v - 0.5) ** 2 for v in values) / 3)
    mean, lo, hi = mean_interval(values)
    half = 3.182446305284263 * sd / 2
    assert mean == pytest.approx(0.5)
    assert lo == pytest.approx(0.5 - half) and hi == pytest.approx(0.5 + half)


def test_mean_interval_clipped_to_accuracy_range():
    mean, lo, hi = mean_interval([0.99, 1.0, 0.95])
    assert 0.0 <= lo <= mean <= hi == 1.0


def test_mean_interval_single_value_is_whole_range():
    assert mean_interval([0.7]) == (0.7, 0.0, 1.0)


def test_mean_interval_identical_values_has_zero_width():
    assert mean_interval([0.8, 0.8, 0.8]) == pytest.approx((0.8, 0.8, 0.8))


def test_mean_interval_rejects_nan_so_failures_are_never_averaged_away():
    with pytest.raises(ValueError, match="finite"):
        mean_interval([0.9, float("nan")])
