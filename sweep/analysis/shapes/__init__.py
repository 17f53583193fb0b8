"""Failure shapes other than collapse: loss jumps that never recover, and fluctuation.

Usage::

    from sweep.analysis.shapes import loss_jump, volatility, shape_sentences

    jump = loss_jump(val_loss)                # a LossJump (epoch, ratio, ...) or None
    volatility(train_loss)                    # robust epoch-to-epoch jitter of the log loss
    shape_sentences(summary, runs, axes)      # the verdict's sentences on them

Modules: `curves` (the detectors: pure functions of one run's curves), `reading` (what the
verdict says about them over a sweep).
"""

from sweep.analysis.shapes.curves import (
    LossJump,
    loss_jump,
    loss_jumps,
    noise_scale,
    usable_log_prefix,
    volatility,
    warmup_epochs,
)
from sweep.analysis.shapes.reading import loss_jump_sentence, shape_sentences, volatility_sentences

__all__ = [
    "LossJump",
    "loss_jump",
    "loss_jumps",
    "noise_scale",
    "usable_log_prefix",
    "volatility",
    "warmup_epochs",
    "loss_jump_sentence",
    "shape_sentences",
    "volatility_sentences",
]
