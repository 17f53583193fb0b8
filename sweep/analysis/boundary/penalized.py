"""Firth's penalised likelihood and the Jeffreys posterior of the monotone logistic collapse curve,
vectorised over a batch of slices that share one design (the report fits one slice at a time;
the simulation tests fit thousands at once with the same code).

The model: P(collapse | lr) = expit(a + b*x), x = log10(lr), b >= 0. Firth's penalty is the
Jeffreys prior |I(a, b)|^(1/2), I the Fisher information; the penalised log-likelihood

    l*(a, b) = sum_i k_i log p_i + (n_i - k_i) log(1 - p_i) + 1/2 log det I(a, b)

has a finite maximum under complete and quasi-complete separation (Firth 1993; Heinze &
Schemper 2002), where maximum likelihood has none. That maximum (`firth_fit`) is the point
estimate; the posterior under the same prior (`Posterior`) gives every interval and bound, by
integration over a grid of (x50, log b): the Jeffreys prior is proper for a binomial model with
two or more distinct lrs, so the posterior is proper even when every run survived.

Usage::

    a, b = firth_fit(x, n, k)                  # x, n: (L,), k: (B, L) -> arrays (B,)
    post = Posterior(x, n, k)
    post.quantiles(0.1, [0.025, 0.05, 0.975])  # (B, 3) in log10(lr): lr_at_10's 95% ends and bound
    post.band(xs, [0.025, 0.975])              # (B, len(xs), 2): pointwise 95% band of the risk
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import expit, log_expit, logit

# Slopes of the posterior grid, per decade of lr: 0.02 (flat over 50 decades) to 500 (a step at
# any grid spacing). Beyond them the posterior holds no mass that matters (its density falls
# like b^-2 as b -> 0 and is e^-18 of its peak at b = 100 even for separated data).
LOG_B_MIN, LOG_B_MAX = math.log(0.02), math.log(500.0)
# Coarse grid (where the mass is) and fine grid (inside that box): x50 points x log-slope points.
_COARSE_STEP, _COARSE_U, _FINE_X, _FINE_U = 0.05, 40, 160, 40
_MARGIN = 4.0  # decades beyond the tested range searched for x50
_MASS_CUT = 18.0  # grid points below max log-weight - 18 (1.5e-8) carry no mass that matters
_ETA = 30.0  # risk band ends are searched in logit(risk) within +-30


def penalized_loglik(
    x: np.ndarray, n: np.ndarray, k: np.ndarray, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """l*(a, b) for each row of k (B, L) at (a, b) (B,)."""
    z = np.asarray(a)[..., None] + np.asarray(b)[..., None] * x
    w = n * np.exp(log_expit(z) + log_expit(-z))
    s0, s1, s2 = w.sum(-1), (w * x).sum(-1), (w * x * x).sum(-1)
    ll = (k * log_expit(z) + (n - k) * log_expit(-z)).sum(-1)
    return ll + 0.5 * np.log(np.maximum(s0 * s2 - s1 * s1, 1e-300))


def firth_fit(
    x: Sequence[float],
    n: Sequence[float],
    k: np.ndarray,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    iterations: int = 60,
) -> tuple[np.ndarray, np.ndarray]:
    """Firth's penalised maximum-likelihood (a, b) with b >= 0, for each row of k (B, L).

    Newton steps on the modified score U* = X'(k - n p + h (1/2 - p)) (h: the hat values), halved
    until l* rises; where the maximum has b < 0 (collapse falling with the lr) it is the flat curve
    on the boundary b = 0, whose level maximises l*(a, 0): p = (K + 1) / (N + 2) in closed form.
    The lrs are centred first (a and b nearly uncorrelated: Newton converges in a few steps).
    """
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    k = np.atleast_2d(np.asarray(k, dtype=float))
    centre = float(np.average(x, weights=n)) if n.sum() > 0 else 0.0
    xc = x - centre
    if start is None:
        rate = (k.sum(-1) + 0.5) / (n.sum() + 1.0)
        a, b = logit(rate), np.full(len(k), 1.0)
    else:
        a, b = start[0] + start[1] * centre, np.maximum(start[1], 1e-6)
    a, b = np.array(a, dtype=float), np.array(b, dtype=float)
    cur = penalized_loglik(xc, n, k, a, b)
    for _ in range(iterations):
        z = a[:, None] + b[:, None] * xc
        p = expit(z)
        w = n * p * (1 - p)
        s0, s1, s2 = w.sum(-1), (w * xc).sum(-1), (w * xc * xc).sum(-1)
        det = np.maximum(s0 * s2 - s1 * s1, 1e-300)
        h = w * (s2[:, None] - 2 * s1[:, None] * xc + s0[:, None] * xc * xc) / det[:, None]
        r = k - n * p + h * (0.5 - p)
        u0, u1 = r.sum(-1), (r * xc).sum(-1)
        da, db = (s2 * u0 - s1 * u1) / det, (s0 * u1 - s1 * u0) / det
        step = 1.0
        moved = np.zeros(len(a), dtype=bool)
        done = (np.abs(da) < 1e-10) & (np.abs(db) < 1e-10)
        for _half in range(30):
            na, nb = a + step * da, np.maximum(b + step * db, 0.0)
            new = penalized_loglik(xc, n, k, na, nb)
            ok = ~moved & ~done & (new >= cur - 1e-12)
            a, b, cur = np.where(ok, na, a), np.where(ok, nb, b), np.where(ok, new, cur)
            moved |= ok
            if np.all(moved | done):
                break
            step *= 0.5
        if np.all(done | (np.abs(step * da) < 1e-10) & (np.abs(step * db) < 1e-10)):
            break
    # The boundary b = 0: the flat curve's best level, compared with the interior maximum.
    flat_a = logit((k.sum(-1) + 1.0) / (n.sum() + 2.0))
    flat = penalized_loglik(xc, n, k, flat_a, np.zeros(len(a)))
    use_flat = (flat > cur) | (b <= 0)
    a, b = np.where(use_flat, flat_a, a), np.where(use_flat, 0.0, b)
    return a - b * centre, b


class Posterior:
    """The Jeffreys posterior of (x50, b) for each row of k (B, L), on a grid that follows its mass.

    A coarse grid over x50 in [x0 - 4, x1 + 4] decades and b in [0.02, 500] finds where the
    mass lies; a fine grid of 160 x 40 cells over that box (per slice) integrates it. Densities
    in (x50, u = log b) carry the Jacobian b^2 of (a, b) -> (x50, u). Every statement is read
    from the cumulative distribution of x50 within each row of u: x_q = x50 + logit(q)/b is that
    distribution shifted by logit(q)/b, and the risk at x is below r where x50 lies above
    x - logit(r)/b, so quantiles need no histogram (precise even where x_q moves by decades
    between neighbouring slopes).
    """

    def __init__(self, x: Sequence[float], n: np.ndarray, k: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=float)
        self.k = np.atleast_2d(np.asarray(k, dtype=float))
        # Runs per lr: one design for the whole batch (L,), or one per row (B, L); counts may be
        # fractional (expected outcomes, when planning runs).
        self.n = np.broadcast_to(np.asarray(n, dtype=float), self.k.shape)
        x0, x1 = float(self.x.min()), float(self.x.max())
        # Coarse: one shared grid, a matrix product for the whole batch.
        cx = np.arange(x0 - _MARGIN, x1 + _MARGIN + 1e-9, _COARSE_STEP)
        cu = np.linspace(LOG_B_MIN, LOG_B_MAX, _COARSE_U)
        z = np.exp(cu)[None, :, None] * (self.x[None, None, :] - cx[:, None, None])  # (X, U, L)
        if np.all(self.n == self.n[:1]):  # one design: its prior part is computed once
            prior = _log_prior(z, cu[None, :], self.n[0], self.x).reshape(1, -1)
        else:
            prior = _log_prior(
                z[None], cu[None, None, :], self.n[:, None, None, :], self.x
            ).reshape(len(self.k), -1)
        lw = self.k @ z.reshape(-1, len(self.x)).T + prior  # (B, X*U)
        heavy = lw >= lw.max(-1, keepdims=True) - _MASS_CUT
        ix, iu = np.divmod(np.arange(lw.shape[1]), len(cu))
        big = np.where(heavy, 0, 10**9)
        lo_x = cx[np.min(ix + big, axis=1)] - _COARSE_STEP
        hi_x = cx[np.max(np.where(heavy, ix, -1), axis=1)] + _COARSE_STEP
        du = cu[1] - cu[0]
        lo_u = np.maximum(cu[np.min(iu + big, axis=1)] - du, LOG_B_MIN)
        hi_u = np.minimum(cu[np.max(np.where(heavy, iu, -1), axis=1)] + du, LOG_B_MAX)
        # Fine: per slice, a grid of cells over its box, each weighted at its midpoint.
        self.lo = lo_x
        self.h = (hi_x - lo_x) / _FINE_X
        mid = lo_x[:, None] + self.h[:, None] * (np.arange(_FINE_X) + 0.5)  # (B, X)
        self.u = (
            lo_u[:, None] + (hi_u - lo_u)[:, None] * (np.arange(_FINE_U) + 0.5) / _FINE_U
        )  # (B, U)
        z = np.exp(self.u)[:, None, :, None] * (
            self.x[None, None, None, :] - mid[:, :, None, None]
        )  # (B, X, U, L)
        lw = (self.k[:, None, None, :] * z).sum(-1) + _log_prior(
            z, self.u[:, None, :], self.n[:, None, None, :], self.x
        )
        w = np.exp(lw - lw.max(axis=(1, 2), keepdims=True))
        w /= w.sum(axis=(1, 2), keepdims=True)
        # Cumulative mass over x50 within each u row, at the cells' edges: (B, X + 1, U).
        self.cum = np.concatenate([np.zeros((len(w), 1, w.shape[2])), np.cumsum(w, axis=1)], axis=1)

    def __getitem__(self, rows) -> Posterior:
        """The posterior of some rows of the batch (an int keeps the batch axis, of length 1)."""
        rows = [rows] if isinstance(rows, (int, np.integer)) else rows
        out = object.__new__(Posterior)
        out.x, out.n, out.k = self.x, self.n[rows], self.k[rows]
        out.lo, out.h, out.u, out.cum = self.lo[rows], self.h[rows], self.u[rows], self.cum[rows]
        return out

    def _below(self, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Mass with x50 <= y[j, u] in each u row, summed over the rows: y (J, U), rows (J,) the
        batch row of each entry (linear within a cell)."""
        n_x, n_u = self.cum.shape[1] - 1, self.cum.shape[2]
        pos = np.clip((y - self.lo[rows][:, None]) / self.h[rows][:, None], 0.0, float(n_x))
        i = np.minimum(pos.astype(np.int64), n_x - 1)
        flat = (rows[:, None] * (n_x + 1) + i) * n_u + np.arange(
            n_u
        )  # index of the cell's left edge
        left = np.take(self.cum, flat)
        right = np.take(self.cum, flat + n_u)
        return (left + (pos - i) * (right - left)).sum(-1)

    def quantiles(self, q: float, probs: Sequence[float]) -> np.ndarray:
        """Posterior quantiles of x_q = log10(lr at risk q), (B, len(probs)); -inf / +inf where a
        quantile lies more than 8 decades beyond the tested range. All probs are bisected together."""
        probs = np.asarray(probs, dtype=float)
        rows = np.repeat(np.arange(len(self.u)), len(probs))
        target = np.tile(probs, len(self.u))
        shift = float(logit(q)) / np.exp(self.u[rows])  # (J, U)
        lo_edge, hi_edge = float(self.x.min()) - 8.0, float(self.x.max()) + 8.0
        lo, hi = np.full(len(rows), lo_edge), np.full(len(rows), hi_edge)
        for _ in range(32):  # 16 decades / 2^32: far below any reported precision
            mid = 0.5 * (lo + hi)
            below = self._below(mid[:, None] - shift, rows) >= target
            lo, hi = np.where(below, lo, mid), np.where(below, mid, hi)
        v = 0.5 * (lo + hi)
        v = np.where(v <= lo_edge + 1e-6, -np.inf, np.where(v >= hi_edge - 1e-6, np.inf, v))
        return v.reshape(len(self.u), len(probs))

    def band(self, xs: Sequence[float], probs: Sequence[float]) -> np.ndarray:
        """Pointwise posterior quantiles of the risk at each log10(lr) in xs: (B, len(xs), len(probs))."""
        xs, probs = np.asarray(xs, dtype=float), np.asarray(probs, dtype=float)
        b = np.exp(self.u)  # (B, U)
        per_row = len(xs) * len(probs)
        rows = np.repeat(np.arange(len(b)), per_row)
        xx = np.tile(np.repeat(xs, len(probs)), len(b))
        target = np.tile(probs, len(b) * len(xs))
        lo, hi = np.full(len(rows), -_ETA), np.full(len(rows), _ETA)
        for _ in range(30):
            eta = 0.5 * (lo + hi)
            # risk <= expit(eta) where x50 >= x - eta / b: mass 1 - below(x - eta / b)
            at_most = 1.0 - self._below(xx[:, None] - eta[:, None] / b[rows], rows) >= target
            lo, hi = np.where(at_most, lo, eta), np.where(at_most, eta, hi)
        return expit(0.5 * (lo + hi)).reshape(len(b), len(xs), len(probs))


def _log_prior(z: np.ndarray, u: np.ndarray, n: np.ndarray, x: np.ndarray) -> np.ndarray:
    """What a grid point's log-weight holds besides sum k z: sum n log(1 - p), 1/2 log det I, and
    2u (the Jacobian of (a, b) -> (x50, log b))."""
    p = expit(z)
    w = n * (p * (1.0 - p))
    powers = np.stack(
        [np.ones_like(x), x, x * x], axis=1
    )  # sums over the lrs as one matrix product
    s = w @ powers
    half_logdet = 0.5 * np.log(np.maximum(s[..., 0] * s[..., 2] - s[..., 1] ** 2, 1e-300))
    return (n * log_expit(-z)).sum(-1) + half_logdet + 2.0 * u
