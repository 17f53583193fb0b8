"""The definitions behind the per-epoch collapse signals (issue 26), shared by every trainer that
records them: lrsweep's `GradientMonitor` for a user's PyTorch loop and the Keras and Lightning
callbacks (sweep.integrations). No torch here, so the Keras callback can use it on any backend.

Usage::

    from sweep.core.signal_rules import ladder_bisection, sigmoid_saturated, tanh_saturated

    crit_lr = lr * ladder_bisection(lambda m: loss_at(start + m * lr * d) > base)
    sigmoid_saturated(gate)                   # a < 0.03 or a > 0.97, on any array type
    tanh_saturated(candidate)                 # |a| > 0.97

Column names (per epoch): `update_ratio`, `update_ratio/<group>`, `sat_frac`, `sat_frac/<layer>`,
`crit_lr`, `logit_lse`, `pred_top_frac`, the gradient-norm columns, and
`nonfinite_origin/<group>` (1.0 on the row of the epoch where the first NaN/inf appeared, in the
group or layer named after the slash). The origin is a number in a column's name rather than a
string in a cell because Keras's progress bar, Lightning's `self.log` and the function trainer's
`report()` accept only numbers.
"""

from __future__ import annotations

#: A sigmoid gate is saturated within this margin of 0 or 1.
SIGMOID_MARGIN = 0.03
#: A tanh activation (candidate, hidden state) is saturated beyond this absolute value
#: (Karpathy's `(h.abs() > 0.97)`).
TANH_LIMIT = 0.97
#: The probe batch: this many sequences (the contract allows up to 256; lrsweep's own loop reads
#: 64 by default, `signals.probe_size`).
PROBE_SIZE = 64
#: crit_lr's ladder, as multiples of the lr (lrsweep's own loop: sweep.training.signals.LADDER).
#: From the weights before the epoch's last update, along that update per unit lr, on the
#: update's own batch in eval mode, the smallest step eta = m * lr whose loss exceeds the loss at
#: the start, found by bisection (3 forward passes, plus one at the start). The update taken is
#: the step m = 1, so `crit_lr < lr` says the last step overshot on its own batch. Censored at
#: both ends: lr / 8 when the loss rises already there, CRIT_NO_RISE x lr when it rises nowhere.
CRIT_LADDER: tuple[float, ...] = tuple(2.0**k for k in range(-3, 4))
CRIT_NO_RISE = 16.0

UPDATE_RATIO = "update_ratio"
SAT_FRAC = "sat_frac"
CRIT_LR = "crit_lr"
LOGIT_LSE = "logit_lse"
PRED_TOP_FRAC = "pred_top_frac"
NONFINITE_ORIGIN = "nonfinite_origin"


def ladder_bisection(rises) -> float:
    """crit_lr / lr: the smallest multiple m of CRIT_LADDER with `rises(m)` true (the loss at the
    start + m * lr * d exceeds the loss at the start), by bisection: 3 calls of `rises`. A loss
    that rises once stays risen along the line (the bisection's assumption)."""
    lo, hi = -1, len(CRIT_LADDER)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if rises(CRIT_LADDER[mid]):
            hi = mid
        else:
            lo = mid
    return CRIT_LADDER[hi] if hi < len(CRIT_LADDER) else CRIT_NO_RISE


def sigmoid_saturated(a):
    """Where a sigmoid gate's activation is within SIGMOID_MARGIN of 0 or 1 (a boolean array of
    the input's own type: numpy, torch or a Keras backend tensor)."""
    return (a < SIGMOID_MARGIN) | (a > 1.0 - SIGMOID_MARGIN)


def tanh_saturated(a):
    """Where a tanh activation's absolute value exceeds TANH_LIMIT."""
    return abs(a) > TANH_LIMIT


def origin_column(group: str) -> str:
    """The column that names `group` as where the first non-finite value appeared."""
    return f"{NONFINITE_ORIGIN}/{group}"


def origin_of(row: dict[str, float]) -> str | None:
    """The group a row's `nonfinite_origin/<group>` columns name (value 1), or None."""
    prefix = NONFINITE_ORIGIN + "/"
    for key, value in row.items():
        if key.startswith(prefix) and value == 1.0:
            return key[len(prefix) :]
    return None
