"""Which estimator for the stability boundary: the seeded simulation that chose it (issue 19).

    python benchmarks/bench_estimators.py                 # 40 slices per (design, slope): ~4 min on 2 cores
    python benchmarks/bench_estimators.py --reps 10       # a quicker, noisier look
    python benchmarks/bench_estimators.py --smoke         # 1 slice per (design, slope): that it runs (CI)

True collapse curves expit(slope * (log10(lr) - x50)), slopes 1-10 per decade; 12 designs of 4-8
lrs a quarter, half or whole decade apart with 3-10 seeds; x50 anywhere in the grid or up to one
lr step beyond it. Only slices with mixed outcomes enter (the others get exact bounds whatever the
estimator). Candidates, all on the same simulated counts:

  ml         maximum likelihood, the step's convention under separation, profile-likelihood
             intervals (chi-square 1 df) and one-sided bound: the landed version
  firth-pl   Firth's penalised likelihood with penalised-profile intervals (Heinze & Schemper 2002)
  cauchy     posterior median under Gelman et al. (2008): Cauchy(0, 2.5) on the slope of inputs
             scaled to sd 0.5, Cauchy(0, 10) on the centred intercept; posterior quantiles
  jeffreys   posterior median under the Jeffreys prior; posterior quantiles
  chosen     Firth's estimate, Jeffreys-posterior intervals and safe LR (the product:
             sweep.analysis.boundary.fit_boundary_batch)

Per slope: the share of slices whose lr_at_10 is reported (inside the tested range) where the true
risk is >= 30% (of all slices, and of those reporting a number), the share whose safe LR (one-sided
95% bound) lies past the true lr_at_10, the coverage of the 95% intervals of lr_at_10 and
lr_at_50, and the median error of the reported lr_at_10 in decades. The grid candidates integrate
on a (x_q, log slope) grid of 0.01 decades x 90 slopes in [0.05, 300].
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import expit, log_expit, logit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sweep.analysis.boundary import fit_boundary_batch  # noqa: E402

SLOPES = (1.0, 1.5, 2.0, 3.0, 4.5, 6.0, 10.0)
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
U = np.concatenate(
    [[-np.inf], np.linspace(math.log(0.05), math.log(300), 90)]
)  # log slope; b = 0 first
DT = 0.01
CANDIDATES = ("ml", "firth-pl", "cauchy", "jeffreys", "chosen")


def _grid(x: np.ndarray, n: np.ndarray, q: float):
    """(t, z, sum n log(1-p), 1/2 log det I, centred intercept) on the (x_q = t, log b) grid."""
    ts = np.arange(x[0] - 3.0, x[-1] + 3.0 + 1e-9, DT)
    b = np.exp(U)
    z = logit(q) + b[None, :, None] * (x[None, None, :] - ts[:, None, None])
    w = n * expit(z) * expit(-z)
    det = w.sum(-1) * (w * x * x).sum(-1) - (w * x).sum(-1) ** 2
    centre = float(np.average(x, weights=n))
    a_c = logit(q) - b[None, :] * ts[:, None] + b[None, :] * centre
    return ts, z, (n * log_expit(-z)).sum(-1), 0.5 * np.log(np.maximum(det, 1e-300)), a_c


def _profile(ts, prof, cut_two=3.841, cut_one=2.706):
    """Estimate (midpoint of the maximum's plateau), 95% ends and the one-sided 95% lower bound."""
    stat = 2 * (prof.max(-1, keepdims=True) - prof)
    flat = stat <= 1e-6
    first, last = flat.argmax(-1), len(ts) - 1 - flat[:, ::-1].argmax(-1)
    out = {"est": 0.5 * (ts[first] + ts[last])}
    for name, cut, low in (("lo", cut_two, True), ("hi", cut_two, False), ("safe", cut_one, True)):
        inside = stat <= cut
        i = inside.argmax(-1) if low else len(ts) - 1 - inside[:, ::-1].argmax(-1)
        edge = 0 if low else len(ts) - 1
        out[name] = np.where(i == edge, -np.inf if low else np.inf, ts[i])
    return out


def _posterior(ts, log_density):
    """Median, 95% ends and 5% quantile of t from log densities on the (t, log b) grid."""
    dens = np.exp(log_density - log_density.max(axis=(1, 2), keepdims=True)).sum(-1)
    cdf = np.cumsum(dens, -1)
    cdf /= cdf[:, -1:]

    def quantile(p):
        return np.array([np.interp(p, c, ts) for c in cdf])

    return {
        "est": quantile(0.5),
        "lo": quantile(0.025),
        "hi": quantile(0.975),
        "safe": quantile(0.05),
    }


def candidates(
    x: np.ndarray, n: np.ndarray, k: np.ndarray
) -> dict[str, dict[float, dict[str, np.ndarray]]]:
    """Every candidate's estimates (log10 lr) for q = 0.1 and 0.5, per slice (row of k)."""
    out: dict[str, dict[float, dict[str, np.ndarray]]] = {c: {} for c in CANDIDATES}
    sd = math.sqrt(np.average((x - np.average(x, weights=n)) ** 2, weights=n))
    for q in (0.1, 0.5):
        ts, z, c, half_logdet, a_c = _grid(x, n, q)
        ll = (k @ z.reshape(-1, len(x)).T + c.reshape(-1)[None]).reshape(len(k), *c.shape)
        out["ml"][q] = _profile(ts, ll.max(-1))
        out["firth-pl"][q] = _profile(ts, (ll + half_logdet).max(-1))
        jacobian = 2 * U[None, :]  # (a, b) -> (t, log b)
        cauchy = (
            -np.log1p((a_c / 10.0) ** 2)
            - np.log1p((np.exp(U)[None, :] * 2 * sd / 2.5) ** 2)
            + jacobian
        )
        jeffreys = half_logdet + jacobian
        for name, prior in (("cauchy", cauchy), ("jeffreys", jeffreys)):
            lp = ll + prior[None]
            lp[:, :, 0] = -np.inf  # b = 0 has no mass
            out[name][q] = _posterior(ts, lp)
    fits = fit_boundary_batch(10**x, n, k)
    for q, attr in ((0.1, "at_10"), (0.5, "at_50")):
        est = []
        for f in fits:
            r = getattr(f, attr)
            est.append(
                math.log10(r.estimate)
                if r.estimate is not None
                else (np.inf if r.kind == "above" else -np.inf if r.kind == "below" else np.nan)
            )
        out["chosen"][q] = {
            "est": np.array(est),
            "lo": np.array([f.raw_intervals[q][0] for f in fits]),
            "hi": np.array([f.raw_intervals[q][1] for f in fits]),
        }
    out["chosen"][0.1]["safe"] = np.array(
        [math.log10(f.safe.lr) if f.safe.lr is not None else -np.inf for f in fits]
    )
    return out


def simulate(reps: int, seed: int = 19) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {
        "slope": [],
        "x50": [],
        "x0": [],
        "x1": [],
        **{c: [] for c in CANDIDATES},
    }
    for n_lrs, spacing, seeds in DESIGNS:
        x = np.log10(1e-3) + spacing * np.arange(n_lrs)
        n = np.full(n_lrs, float(seeds))
        for slope in SLOPES:
            x50 = rng.uniform(x[0] - spacing, x[-1] + spacing, reps)
            k = rng.binomial(seeds, expit(slope * (x[None, :] - x50[:, None]))).astype(float)
            mixed = (k.sum(1) > 0) & (k.sum(1) < n.sum())
            k, x50 = k[mixed], x50[mixed]
            res = candidates(x, n, k)
            rows["slope"] += [slope] * len(k)
            rows["x50"] += list(x50)
            rows["x0"] += [x[0]] * len(k)
            rows["x1"] += [x[-1]] * len(k)
            for c in CANDIDATES:
                rows[c] += [
                    {q: {key: float(v[i]) for key, v in res[c][q].items()} for q in (0.1, 0.5)}
                    for i in range(len(k))
                ]
    return rows


def table(rows: dict[str, list], name: str) -> str:
    slope, x50 = np.array(rows["slope"]), np.array(rows["x50"])
    x0, x1 = np.array(rows["x0"]), np.array(rows["x1"])
    r = rows[name]
    est = np.array([v[0.1]["est"] for v in r])
    inside = (est >= x0 - 1e-9) & (est <= x1 + 1e-9)
    x10 = x50 + logit(0.1) / slope
    risky = inside & (expit(slope * (est - x50)) >= 0.3)
    safe = np.array([v[0.1]["safe"] for v in r])
    past = (safe >= x0) & (safe > x10)
    cov10 = np.array([v[0.1]["lo"] <= t <= v[0.1]["hi"] for v, t in zip(r, x10)])
    cov50 = np.array([v[0.5]["lo"] <= t <= v[0.5]["hi"] for v, t in zip(r, x50)])
    err = np.where(inside, np.abs(est - x10), np.nan)
    lines = [
        f"**{name}**",
        "",
        "| slope | slices | >= 30% (of slices) | (of reported) | safe LR past truth | covers "
        "lr_at_10 | covers lr_at_50 | median error (decades) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in SLOPES:
        m = slope == s
        lines.append(
            f"| {s:g} | {m.sum()} | {risky[m].mean():.1%} | {risky[m].sum() / max(inside[m].sum(), 1):.1%} | "
            f"{past[m].mean():.1%} | {cov10[m].mean():.1%} | {cov50[m].mean():.1%} | {np.nanmedian(err[m]):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=40, help="slices per (design, slope)")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument(
        "--smoke", action="store_true", help="1 slice per (design, slope): that the script runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.reps = 1
    start = time.perf_counter()
    rows = simulate(args.reps, args.seed)
    for name in CANDIDATES:
        print(table(rows, name), end="\n\n")
    print(f"{len(rows['slope'])} slices with mixed outcomes, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
