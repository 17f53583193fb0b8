"""How far the boundary numbers can be trusted, measured on simulated collapse curves (issue 19).

True curves: P(collapse) = expit(slope * (log10(lr) - x50)), slopes 1-10 per decade; designs of
4-8 lrs half a decade apart (also a quarter and a whole decade apart) with 3-10 seeds each; the 50%
point anywhere in or up to one lr step beyond the grid. Every fit is the product's
(`fit_boundary_batch`, the same code as the report's `fit_boundary_counts`), seeded.

"Of fits" counts every simulated slice, including those that report only a bound (no number) or
that saw no collapse at all (exact bounds): a fit that states no number cannot mislead with one.
docs/statistics.md and README.md quote the table this file measures (`python -m pytest -n 0 -s
tests/test_boundary_simulation.py` prints it; without `-n 0` pytest-xdist swallows the print), and
`test_the_quoted_tables_are_what_the_simulation_gives` fails when either quote goes stale.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, logit

from sweep.analysis.boundary import fit_boundary_batch

pytestmark = pytest.mark.xdist_group("boundary-simulation")  # one worker builds the module's study

SLOPES = (1.0, 1.5, 2.0, 3.0, 4.5, 6.0, 10.0)
# (lrs, spacing in decades, seeds)
DESIGNS = (
    (4, 0.5, 3),
    (5, 0.5, 5),
    (6, 0.5, 3),
    (8, 0.5, 10),
    (5, 0.5, 10),
    (4, 0.5, 5),
    (6, 0.5, 5),
    (8, 0.5, 3),
    (5, 0.25, 5),
    (8, 0.25, 3),
    (5, 1.0, 5),
    (4, 1.0, 3),
)
REPS = 28  # per (design, slope): 336 slices per slope, 2,352 in all


def _simulate():
    rng = np.random.default_rng(19)
    rows = []
    for n_lrs, spacing, seeds in DESIGNS:
        x = np.log10(1e-3) + spacing * np.arange(n_lrs)
        lrs = 10.0**x
        for slope in SLOPES:
            x50 = rng.uniform(x[0] - spacing, x[-1] + spacing, REPS)
            k = rng.binomial(seeds, expit(slope * (x[None, :] - x50[:, None])))
            for fit, centre in zip(fit_boundary_batch(lrs, [seeds] * n_lrs, k), x50):
                rows.append((slope, centre, fit))
    return rows


@pytest.fixture(scope="module")
def sim():
    rows = _simulate()
    slope = np.array([r[0] for r in rows])
    x50 = np.array([r[1] for r in rows])
    fits = [r[2] for r in rows]
    x10 = x50 + logit(0.1) / slope

    def risk_at(lr):
        return np.array(
            [
                expit(s * (math.log10(v) - c)) if v is not None else np.nan
                for v, s, c in zip(lr, slope, x50)
            ]
        )

    est10 = [f.at_10.estimate for f in fits]
    safe = [f.safe.lr if f.safe.kind in ("inside", "above") else None for f in fits]
    return dict(
        slope=slope,
        x50=x50,
        x10=x10,
        fits=fits,
        est10=est10,
        risk_est=risk_at(est10),
        risk_safe=risk_at(safe),
        has_est=np.array([v is not None for v in est10]),
    )


def _coverage(fits, truth, q):
    """Share of fitted slices whose 95% interval of log10(lr_at_q) holds the truth (the interval
    as the posterior gives it, before the tested range cuts it into a bound: what is calibrated)."""
    hits = [
        f.raw_intervals[q][0] <= t <= f.raw_intervals[q][1]
        for f, t in zip(fits, truth)
        if f.modelled
    ]
    return float(np.mean(hits))


def _table(sim):
    """Per slope: share of fits reporting lr_at_10 where the true risk >= 30% (of all fits, and of
    those that report a number), the safe LR past the truth, coverage, median error in decades."""
    out = {}
    for s in SLOPES:
        m = sim["slope"] == s
        fits = [f for f, keep in zip(sim["fits"], m) if keep]
        est = np.array([f.at_10.estimate if f.at_10.estimate is not None else np.nan for f in fits])
        err = np.abs(np.log10(est) - sim["x10"][m])
        risky = np.nan_to_num(sim["risk_est"][m] >= 0.3)
        out[s] = dict(
            n=int(m.sum()),
            reported=float(sim["has_est"][m].mean()),
            risky_of_fits=float(risky.mean()),
            risky_of_reported=float(risky.sum() / max(sim["has_est"][m].sum(), 1)),
            safe_past=float(np.nan_to_num(sim["risk_safe"][m] > 0.1).mean()),
            modelled=float(np.mean([f.modelled for f in fits])),
            cover_10=_coverage(fits, sim["x10"][m], 0.1),
            cover_50=_coverage(fits, sim["x50"][m], 0.5),
            claims_10=float(np.mean([f.at_10.covers(10**t) for f, t in zip(fits, sim["x10"][m])])),
            claims_50=float(np.mean([f.at_50.covers(10**t) for f, t in zip(fits, sim["x50"][m])])),
            median_error=float(np.nanmedian(err)),
        )
    return out


def test_print_the_table(sim):
    rows = _table(sim)
    print(
        "\n| slope (per decade) | fits | fitted | lr_at_10 reported | at true risk >= 30% (of "
        "fits) | (of those reported) "
        "| safe LR past the true lr_at_10 | 95% CI covers lr_at_10 | covers lr_at_50 | median "
        "error of lr_at_10 (decades) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s, r in rows.items():
        print(
            f"| {s:g} | {r['n']} | {r['modelled']:.0%} | {r['reported']:.0%} | "
            f"{r['risky_of_fits']:.1%} | {r['risky_of_reported']:.1%} | "
            f"{r['safe_past']:.1%} | {r['cover_10']:.1%} | {r['cover_50']:.1%} | {r['median_error']:.2f} |"
        )
    assert len(rows) == len(SLOPES)


ROOT = Path(__file__).resolve().parent.parent


def _quoted_table(path: Path, header_start: str) -> list[list[str]]:
    """The cells of the markdown table whose header line starts with `header_start`."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _number(cell: str) -> tuple[float, float]:
    """(value, one unit of its last printed digit) of a cell such as 3.3%, 98%, 0.57 decades;
    percentages as shares."""
    text = re.match(r"[-\d.]+", cell).group(0)
    decimals = len(text.split(".")[1]) if "." in text else 0
    scale = 0.01 if cell.rstrip().endswith("%") else 1.0
    return float(text) * scale, 10.0**-decimals * scale


def _matches(cell: str, value: float) -> bool:
    """The quoted number is the measured one at the quote's precision: the simulation is seeded,
    so only a last-digit rounding difference (another BLAS, another CPU) is allowed."""
    quoted, unit = _number(cell)
    return abs(quoted - value) <= unit + 1e-12


def test_the_quoted_tables_are_what_the_simulation_gives(sim):
    rows = _table(sim)
    docs = _quoted_table(
        ROOT / "docs" / "statistics.md", "| slope (per decade) | lr_at_10 reported"
    )
    keys = ("reported", "risky_of_fits", "risky_of_reported", "safe_past", "cover_10", "cover_50")
    assert [float(r[0]) for r in docs] == list(SLOPES), "docs/statistics.md: one row per slope"
    for r in docs:
        measured = rows[float(r[0])]
        for cell, key in zip(r[1:], keys + ("median_error",)):
            assert _matches(cell, measured[key]), (
                "docs/statistics.md",
                r[0],
                key,
                cell,
                measured[key],
            )
    readme = _quoted_table(ROOT / "README.md", "| slope (per decade) | safe LR where")
    assert readme, "README.md quotes the table"
    for r in readme:
        measured = rows[float(r[0])]
        for cell, key in zip(r[1:], ("safe_past", "risky_of_fits", "cover_10", "median_error")):
            assert _matches(cell, measured[key]), ("README.md", r[0], key, cell, measured[key])


def test_the_reported_lr_at_10_rarely_sits_where_the_risk_is_already_30_percent(sim):
    """At most 5% of fits at every slope (the landed maximum-likelihood step: 14% at 1.5 per
    decade, 29% at 3, 50% at 6). Of the fits that report a number, more at shallow slopes (the
    10% point then lies below most grids, and a number inside is the optimistic tail): bounded
    here at 10%, stated in docs/statistics.md."""
    for s, r in _table(sim).items():
        assert r["risky_of_fits"] <= 0.05, (s, r)
        assert r["risky_of_reported"] <= 0.10, (s, r)


def test_the_safe_lr_rarely_lies_where_the_risk_exceeds_10_percent(sim):
    """A one-sided 95% bound: past the true lr_at_10 in at most 5% of fits (over the design
    space; at most 7% at any one slope, the sampling error of 336 fits being 1.2 points)."""
    past = np.nan_to_num(sim["risk_safe"] > 0.1)
    assert past.mean() <= 0.05
    for s, r in _table(sim).items():
        assert r["safe_past"] <= 0.07, (s, r)


def test_95_percent_intervals_cover_93_to_97_percent(sim):
    """Of the fitted slices (mixed outcomes at two or more lrs; the exact bounds of the others
    hold by construction and would only inflate the figure), pooled over the design space, and
    within 91-98.5% at every slope. What the report states (an interval cut to the tested range,
    a bound, or "not determined") holds for each risk level in at least 93% of all fits."""
    rows = _table(sim)
    n = np.array([r["n"] * r["modelled"] for r in rows.values()])
    for key in ("cover_10", "cover_50"):
        pooled = float(np.dot(n, [r[key] for r in rows.values()]) / n.sum())
        assert 0.93 <= pooled <= 0.97, (key, pooled)
        assert all(0.91 <= r[key] <= 0.985 for r in rows.values()), (key, rows)
    assert all(min(r["claims_10"], r["claims_50"]) >= 0.93 for r in rows.values()), rows


def test_median_error_of_lr_at_10_per_slope(sim):
    """The table's last column, bounded: within half a decade at 1 per decade, within 0.3 decades
    (a factor of 2) from 3 per decade up (measured 0.46 ... 0.14: docs/statistics.md)."""
    rows = _table(sim)
    assert rows[1.0]["median_error"] <= 0.6
    assert all(rows[s]["median_error"] <= 0.3 for s in SLOPES if s >= 3)
    assert rows[10.0]["median_error"] < rows[1.5]["median_error"]


def test_estimates_never_sit_above_their_interval_or_below_the_safe_lr(sim):
    for f in sim["fits"]:
        r = f.at_10
        if r.estimate is not None:
            assert (r.lo is None or r.lo <= r.estimate) and (r.hi is None or r.estimate <= r.hi)
            assert (
                f.safe.lr is None or f.safe.kind != "inside" or f.safe.lr <= r.estimate * (1 + 1e-9)
            )
