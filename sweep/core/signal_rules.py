"""The definitions behind the per-epoch collapse signals (issue 26), shared by every trainer that
records them: lrsweep's `GradientMonitor` for a user's PyTorch loop and the Keras and Lightning
callbacks (sweep.integrations). No torch here, so the Keras callback can use it on any backend.

Usage::

    from sweep.core.signal_rules import CRIT_LADDER, PROBE_SIZE, sigmoid_saturated, tanh_saturated

    steps = [m * lr for m in CRIT_LADDER]     # the step sizes crit_lr tries, smallest first
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
#: The probe batch holds at most this many sequences (from the validation set, else training).
PROBE_SIZE = 256
#: crit_lr's geometric ladder, as multiples of the lr: lr/16 .. 16 lr, smallest first. With the
#: loss at the current weights that makes 10 forward passes at most (Kalra et al. 2026: "fewer
#: than 10"). The lr itself is a rung, so `crit_lr <= lr` means the next step of the same size
#: would already raise the loss. A rise at the first rung reports lr/16 (an upper bound); no rise
#: up to 16 lr reports NaN.
CRIT_LADDER: tuple[float, ...] = tuple(2.0**k for k in range(-4, 5))

UPDATE_RATIO = "update_ratio"
SAT_FRAC = "sat_frac"
CRIT_LR = "crit_lr"
LOGIT_LSE = "logit_lse"
PRED_TOP_FRAC = "pred_top_frac"
NONFINITE_ORIGIN = "nonfinite_origin"


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
