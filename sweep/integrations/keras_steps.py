"""Per-step signals of a Keras model, kept as backend tensors and read once per epoch, for
sweep.integrations.keras.

Usage (by CollapseSignals)::

    steps = KerasSteps(model, gradients=True, check_before=False)   # groups: top-level layers
    steps.begin(); ...; steps.end()                # around each training step (batch callbacks)
    steps.output(layer_index, output)              # each top-level layer's output in the step
    row, origin = steps.epoch(clip, True)          # numpy-side columns; the first NaN's layer

Every step: a copy of the trainable weights after the step (the next step's start: their
difference is the update; the last step's weights and update stay for crit_lr), the squared
norms of each variable's update, weights and, where the backend leaves them readable after the
step (torch: each variable's `.grad`, which Keras's optimizers never clip in place), gradients,
summed per top-level layer once per epoch. Each norm is a keras.ops sum kept as a backend
scalar, all stacked and read once per epoch. With the sums of the layers' outputs (eager
backends) the same numbers show where a NaN/inf appeared first.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from sweep.core.signal_rules import UPDATE_RATIO


def to_numpy(x) -> np.ndarray:
    """A backend tensor as a numpy array. Through `tolist()` where the tensor has one: numpy 2
    warns when it converts a torch tensor itself (torch's `__array__` takes no `copy`)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, keras.Variable):
        x = x.value
    tolist = getattr(x, "tolist", None)
    return np.asarray(tolist()) if callable(tolist) else ops.convert_to_numpy(x)


def _squares(tensors) -> list:
    """Each tensor's sum of squares (0-d backend tensors: stacked once per epoch)."""
    return [ops.sum(t * t) for t in tensors]


class KerasSteps:
    """Update ratios, gradient norms and non-finite checks of every training step."""

    def __init__(self, model, gradients: bool, check_before: bool) -> None:
        self.model = model
        self.variables = list(model.trainable_variables)
        self.names = [layer.name for layer in model.layers]
        owner = {}
        for i, layer in enumerate(model.layers):
            for v in layer.trainable_variables:
                owner.setdefault(id(v), i)
        if any(id(v) not in owner for v in self.variables):  # the model's own variables
            self.names.append("(model)")
        self._layer_of = np.array([owner.get(id(v), len(self.names) - 1) for v in self.variables])
        self.weighted = sorted(set(self._layer_of.tolist()))  # the layers with trainable weights
        self.gradients = gradients
        # Without the layers' outputs (compiled backends) the weights are also read before each
        # step, to tell a NaN written between steps from one the step made; eager backends
        # start each step from the last one's weights.
        self.check_before = check_before
        self._before = None  # the weights before this step, one copy per variable
        self._before_sq = None
        self.last_update = None  # w_after - w_before of the last step, per variable
        self.last_before = None  # w_before of the last step, per variable
        self._reset()

    def _reset(self) -> None:
        self._diff_sq: list = []  # per step: V squared norms of the update
        self._weight_sq: list = []  # per step: V squared norms of the weights before it
        self._grad_sq: list = []  # per step: V squared norms of the gradients
        self._outputs: list[tuple[tuple[int, ...], list]] = []  # per step: layers, output sums
        self._step_outputs: list[tuple[int, object]] = []

    def _copy(self) -> list:
        return [ops.copy(v.value) for v in self.variables]

    def begin(self) -> None:
        if self._before is None or self.check_before:
            self._before = self._copy()
            self._before_sq = _squares(self._before)
        self._step_outputs = []

    def output(self, layer: int, value) -> None:
        """A top-level layer's output in this step (its sum: finite exactly when all of it is)."""
        self._step_outputs.append((layer, ops.sum(value)))

    def end(self) -> None:
        if self._before is None:
            return
        after = self._copy()
        diff = [a - b for a, b in zip(after, self._before)]
        self.last_update, self.last_before = diff, self._before
        self._diff_sq.append(_squares(diff))
        self._weight_sq.append(self._before_sq)
        if self.gradients:
            grads = [getattr(v.value, "grad", None) for v in self.variables]
            self._grad_sq.append(
                _squares(
                    g if g is not None else 0.0 * v.value for g, v in zip(grads, self.variables)
                )
            )
        self._outputs.append(
            (tuple(i for i, _ in self._step_outputs), [s for _, s in self._step_outputs])
        )
        self._before, self._before_sq = after, _squares(after)

    def _read(self, per_step: list) -> np.ndarray | None:
        """[steps, layers] from per-step, per-variable squared norms (one stack, one read)."""
        if not per_step:
            return None
        values = to_numpy(ops.stack([t for step in per_step for t in step]))
        values = values.reshape(len(per_step), len(self.variables)).astype("float64")
        out = np.zeros((len(per_step), len(self.names)))
        for v, layer in enumerate(self._layer_of):
            out[:, layer] += values[:, v]
        return out

    def epoch(self, clip: float | None, clip_known: bool) -> tuple[dict[str, float], str | None]:
        """This epoch's columns and the layer where a NaN/inf first appeared (None: none)."""
        row: dict[str, float] = {}
        diff, before = self._read(self._diff_sq), self._read(self._weight_sq)
        grads = self._read(self._grad_sq)
        sums = [s for _, step in self._outputs for s in step]
        flat = to_numpy(ops.stack(sums)).tolist() if sums else []
        outputs, at = [], 0
        for layers, step in self._outputs:
            outputs.append((layers, flat[at : at + len(step)]))
            at += len(step)
        self._reset()
        if diff is not None:
            with np.errstate(all="ignore"):
                row[UPDATE_RATIO] = float(np.mean(np.sqrt(diff.sum(1) / before.sum(1))))
                for g in self.weighted:
                    ratio = np.sqrt(diff[:, g] / before[:, g])
                    row[f"{UPDATE_RATIO}/{self.names[g]}"] = float(np.mean(ratio))
        if grads is not None:
            row.update(self._gradient_row(np.sqrt(grads), clip, clip_known))
        return row, self._origin(diff, before, outputs)

    def _gradient_row(self, per_layer: np.ndarray, clip: float | None, clip_known: bool):
        total = np.sqrt((per_layer**2).sum(1))
        if not clip_known:
            clipped = math.nan  # per-variable clipnorm / clipvalue: not the global norm's share
        else:
            clipped = float(np.mean(total >= clip)) if clip is not None else 0.0
        row = {
            "grad_norm_mean": float(total.mean()),
            "grad_norm_max": float(total.max()),
            "grad_norm_p90": float(np.quantile(total, 0.9)),
            "clip_fraction": clipped,
        }
        for g in self.weighted:
            row[f"grad_norm_mean/{self.names[g]}"] = float(per_layer[:, g].mean())
            row[f"grad_norm_max/{self.names[g]}"] = float(per_layer[:, g].max())
        return row

    def _origin(self, diff, before, outputs) -> str | None:
        """Step by step: weights already non-finite before the step (written from outside) name
        the first such layer; else the first layer whose output was not finite; else the step
        made weights non-finite: the one nearest the output (gradients flow from there)."""
        if diff is None:
            return None
        for d, b, (layers, sums) in zip(diff, before, outputs):
            bad = [g for g in self.weighted if not math.isfinite(b[g])]
            if bad:
                return self.names[bad[0]]
            for layer, value in zip(layers, sums):
                if not math.isfinite(value):
                    return self.names[layer]
            bad = [g for g in self.weighted if not math.isfinite(d[g])]
            if bad:
                return self.names[bad[-1]]
        return None
