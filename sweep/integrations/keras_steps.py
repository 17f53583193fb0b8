"""Per-step signals of a Keras model, kept as backend tensors and read once per epoch, for
sweep.integrations.keras.

Usage (by CollapseSignals)::

    steps = KerasSteps(model, gradients=True)      # groups: the model's top-level layers
    steps.begin(); ...; steps.end()                # around each training step (batch callbacks)
    steps.output(layer_index, output)              # each top-level layer's output in the step
    row, origin = steps.epoch(clip, True)          # numpy-side columns; the first NaN's layer

Every step: the trainable weights flattened into one vector before and after the step (its
difference is the update; the last step's weights and update stay for crit_lr), their squared
norms per top-level
layer, and, where the backend leaves them readable after the step (torch: each variable's
`.grad`, which Keras's optimizers never clip in place), the gradients' squared norms per layer.
With the sums of the layers' outputs (eager backends) the same numbers show where a NaN/inf
appeared first, so no extra operation is spent on that.
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


def _flat(tensors):
    return ops.concatenate([ops.reshape(t, (-1,)) for t in tensors])


class KerasSteps:
    """Update ratios, gradient norms and non-finite checks of every training step."""

    def __init__(self, model, gradients: bool) -> None:
        self.model = model
        self.variables = list(model.trainable_variables)
        self.names = [layer.name for layer in model.layers]
        owner = {}
        for i, layer in enumerate(model.layers):
            for v in layer.trainable_variables:
                owner.setdefault(id(v), i)
        if any(id(v) not in owner for v in self.variables):  # the model's own variables
            self.names.append("(model)")
        layer_of = [owner.get(id(v), len(self.names) - 1) for v in self.variables]
        self.weighted = sorted(set(layer_of))  # the layers that have trainable weights
        sizes = [int(np.prod(v.shape)) for v in self.variables]
        self._segments = ops.convert_to_tensor(np.repeat(layer_of, sizes).astype("int32"))
        self.gradients = gradients
        self._before = None
        self._before_sq = None
        self.last_update = None  # flat w_after - w_before of the last step
        self.last_before = None  # flat w_before of the last step
        self._shapes = [tuple(v.shape) for v in self.variables]
        self._reset()

    def _reset(self) -> None:
        self._norms: list = []  # per step: [2, G] squared norms (update, weights before)
        self._grads: list = []  # per step: [G] squared gradient norms
        self._outputs: list[tuple[tuple[int, ...], object]] = []  # per step: layers, sums
        self._step_outputs: list[tuple[int, object]] = []

    def _per_layer(self, flat):
        return ops.segment_sum(
            ops.square(flat), self._segments, num_segments=len(self.names), sorted=True
        )

    def begin(self) -> None:
        self._before = _flat([v.value for v in self.variables])
        self._before_sq = self._per_layer(self._before)
        self._step_outputs = []

    def output(self, layer: int, value) -> None:
        """A top-level layer's output in this step (its sum: finite exactly when all of it is)."""
        self._step_outputs.append((layer, ops.sum(value)))

    def end(self) -> None:
        if self._before is None:
            return
        diff = _flat([v.value for v in self.variables]) - self._before
        self.last_update, self.last_before = diff, self._before
        self._norms.append(ops.stack([self._per_layer(diff), self._before_sq]))
        if self.gradients:
            grads = [
                g if (g := getattr(v.value, "grad", None)) is not None else ops.zeros(v.shape)
                for v in self.variables
            ]
            self._grads.append(self._per_layer(_flat(grads)))
        layers = tuple(i for i, _ in self._step_outputs)
        sums = ops.stack([s for _, s in self._step_outputs]) if layers else None
        self._outputs.append((layers, sums))
        self._before = None

    def split(self, flat):
        """A flat vector (the weights, an update) as one tensor per trainable variable."""
        cuts = np.cumsum([int(np.prod(s)) for s in self._shapes])[:-1].tolist()
        parts = ops.split(flat, cuts) if cuts else [flat]
        return [ops.reshape(p, s) for p, s in zip(parts, self._shapes)]

    def epoch(self, clip: float | None, clip_known: bool) -> tuple[dict[str, float], str | None]:
        """This epoch's columns and the layer where a NaN/inf first appeared (None: none)."""
        row: dict[str, float] = {}
        norms = to_numpy(ops.stack(self._norms)) if self._norms else None
        grads = to_numpy(ops.stack(self._grads)) if self._grads else None
        outputs = [(layers, to_numpy(s) if s is not None else None) for layers, s in self._outputs]
        self._reset()
        if norms is not None:
            with np.errstate(all="ignore"):
                diff, before = norms[:, 0], norms[:, 1]
                row[UPDATE_RATIO] = float(np.mean(np.sqrt(diff.sum(1) / before.sum(1))))
                for g in self.weighted:
                    name = self.names[g]
                    row[f"{UPDATE_RATIO}/{name}"] = float(
                        np.mean(np.sqrt(diff[:, g] / before[:, g]))
                    )
        if grads is not None:
            row.update(self._gradient_row(np.sqrt(grads), clip, clip_known))
        return row, self._origin(norms, outputs)

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

    def _origin(self, norms, outputs) -> str | None:
        """Step by step: weights already non-finite before the step (written from outside) name
        the first such layer; else the first layer whose output was not finite; else the step
        made weights non-finite: the one nearest the output (gradients flow from there)."""
        if norms is None:
            return None
        for (diff, before), (layers, sums) in zip(norms, outputs):
            bad = [g for g in self.weighted if not math.isfinite(before[g])]
            if bad:
                return self.names[bad[0]]
            if sums is not None:
                for layer, value in zip(layers, sums):
                    if not math.isfinite(value):
                        return self.names[layer]
            bad = [g for g in self.weighted if not math.isfinite(diff[g])]
            if bad:
                return self.names[bad[-1]]
        return None
