"""Detection thresholds (config node `detect`): when a run counts as collapsed, and what each
threshold means (shown next to its value in the report). Part of the schema (sweep.config.schema).
"""

from __future__ import annotations

from dataclasses import dataclass

from sweep.config.rules import Checked


@dataclass
class DetectConfig(Checked):
    """When a run counts as collapsed (docs/reading-the-report.md; recorded in the study).

    The fixed gaps are floors: every call must also clear the sampling noise of the validation
    set's size, at the false-alarm budget `alpha`.
    """

    # which curve the calls read: auto (the accuracy where it measures the training, else the
    # loss), acc, or loss (validation loss when logged, else training loss); a user's training
    # may say the same with trainer.metric
    metric: str = "auto"
    drop: float = 0.5  # diverged: lost this share of what it had learned over chance ...
    patience: int = 3  # ... and stayed below that for at least this many epochs, to the end
    # never learned: best accuracy below chance + min_gain (or below the noise floor)
    min_gain: float = 0.05
    # calls from the loss: never learned when its lowest level stays above (1 - loss_min_gain)
    # x the loss of knowing nothing (or within noise of it)
    loss_min_gain: float = 0.05
    spike_factor: float = 1.5  # spike: val loss above spike_factor x the lowest val loss so far
    constant_frac: float = 0.95  # constant output: this share of predictions falls in one class
    # noise alone passes the learned test with prob. <= alpha/2, the drop test <= alpha
    alpha: float = 0.01
    # the final stretch starts after every window of epochs whose mean is back above the
    # threshold with one-sided confidence 1 - recover_alpha (a recovery, not one noisy epoch)
    recover_alpha: float = 0.1
    # loss jump: val loss up by this many of its own epoch-to-epoch noise sds ...
    jump_z: float = 7.0
    jump_min_rise: float = 1.1  # ... and by this factor over its lowest before, and never back

    def check(self, prefix: str) -> None:
        for name in ("drop", "min_gain", "loss_min_gain", "constant_frac"):
            self.require(0 < getattr(self, name) < 1, prefix, name, "must be in (0, 1)")
        self.require(
            self.metric in ("auto", "acc", "loss"),
            prefix,
            "metric",
            "must be one of auto, acc, loss",
            "e.g. detect.metric=loss (calls from the loss curve)",
        )
        self.require(self.patience >= 1, prefix, "patience", "must be >= 1 epoch")
        self.require(self.spike_factor > 1, prefix, "spike_factor", "must be > 1")
        self.require(0 < self.alpha <= 0.2, prefix, "alpha", "must be in (0, 0.2]")
        self.require(0 < self.recover_alpha < 0.5, prefix, "recover_alpha", "must be in (0, 0.5)")
        self.require(self.jump_z > 0, prefix, "jump_z", "must be > 0")
        self.require(self.jump_min_rise > 1, prefix, "jump_min_rise", "must be > 1")


# What each threshold means, shown next to its value in the report.
DETECT_MEANINGS = {
    "metric": "which curve the calls read: acc (validation accuracy) or the loss (val_loss, else train_loss)",
    "drop": (
        "a run diverged when its level of val_acc fell below chance + (1 - drop) x (best - chance) and stayed "
        "there (calls from the loss: rose above best + drop x (reference - best))"
    ),
    "patience": "... for at least this many epochs until the end of training",
    "min_gain": "a finite run whose best stays below chance + min_gain (or the noise floor) never learned",
    "loss_min_gain": (
        "calls from the loss: a run whose lowest loss level stays above (1 - loss_min_gain) x the loss of "
        "knowing nothing (or within noise of it) never learned"
    ),
    "spike_factor": "a spike is an epoch whose val_loss exceeds spike_factor x the lowest val_loss so far",
    "constant_frac": "a diverged run predicting this share of one class at the end is constant_output",
    "alpha": (
        "false-alarm budget of the noise-aware calls: nothing learned passes the learned test with "
        "probability <= alpha/2, a drop within noise passes the diverged test with probability <= alpha"
    ),
    "recover_alpha": (
        "the final stretch starts after every window of epochs whose mean accuracy is back above the "
        "threshold with one-sided confidence 1 - recover_alpha"
    ),
    "jump_z": (
        "a loss jump: val_loss rises above its lowest by more than jump_z of its own epoch-to-epoch noise "
        "sds ..."
    ),
    "jump_min_rise": "... and by at least this factor, and stays there to the end (not a collapse: its own rate)",
}
