"""Lines about the data a person should read before any curve: scale and class balance.

Usage::

    data_lines(task_info)      # the report header's lines: class balance / target scale, input scale
    data_warnings(task_info)   # one line per problem: unscaled inputs, unbalanced validation classes

`task_info` is the study's stored task facts; its "data" entry comes from
sweep.tasks.summary.data_summary. Pure functions (no torch): `sweep report` and `sweep run` use them.
"""

from __future__ import annotations

from typing import Any

# Validation classes count as badly unbalanced when the largest class holds more than this many
# times the sequences of the smallest one that the training set has (binary: beyond 80/20), or
# a class of the training set is missing from validation altogether.
UNBALANCED_RATIO = 4.0
SHOWN_FEATURES = 8  # features listed one by one in the header; the rest as a range


def _data(task_info: dict[str, Any] | None) -> dict[str, Any]:
    data = (task_info or {}).get("data")
    return data if isinstance(data, dict) else {}


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total for c in counts] if total else [0.0 for _ in counts]


def _balance(names: list[str], counts: list[int]) -> str:
    shares = _shares(counts)
    parts = [f"{n} {s:.0%}" for n, s in zip(names, shares)]
    if len(parts) > 10:
        order = sorted(range(len(shares)), key=lambda i: -shares[i])
        parts = [f"{names[i]} {shares[i]:.0%}" for i in order[:5]] + [
            f"... smallest {names[order[-1]]} {shares[order[-1]]:.1%}"
        ]
    return f"{sum(counts)} ({', '.join(parts)})"


def data_lines(task_info: dict[str, Any] | None) -> list[str]:
    """Class balance (or target scale) and per-feature input scale, one line each."""
    data = _data(task_info)
    lines = []
    classes = data.get("classes")
    unit = "steps" if (task_info or {}).get("per_step") else "sequences"
    if classes:
        lines.append(
            f"Class balance, training {unit}: {_balance(classes['names'], classes['train'])}; "
            f"validation: {_balance(classes['names'], classes['val'])}."
        )
    targets = data.get("targets")
    if targets:
        parts = [
            f"{split} mean {t['mean']:.3g}, sd {t['sd']:.3g}, range {t['min']:.3g} to {t['max']:.3g}"
            for split, t in targets.items()
            if t
        ]
        lines.append(f"Target scale: {'; '.join(parts)}.")
    inputs = data.get("inputs") or {}
    if inputs.get("tokens"):
        lines.append(
            f"Inputs: token ids (vocabulary of {inputs.get('vocab_size')}), read by an embedding; no scaling applies."
        )
    elif inputs.get("mean"):
        lines.append(_input_line(inputs, data.get("normalized")))
    return lines


def _input_line(inputs: dict[str, Any], normalized: bool | None) -> str:
    means, sds, n = inputs["mean"], inputs["sd"], int(inputs.get("n_features", len(inputs["mean"])))
    how = {
        True: "standardised by lrsweep, task.normalize=true",
        False: "unscaled, task.normalize=false",
        None: "as the task builds them",
    }[normalized]
    if n <= SHOWN_FEATURES:
        listed = ", ".join(
            f"{i}: {m:.2f} \u00b1 {s:.2f}" for i, (m, s) in enumerate(zip(means, sds))
        )
        return f"Inputs as the model sees them ({how}), mean \u00b1 sd per feature over valid training steps: {listed}."
    return (
        f"Inputs as the model sees them ({how}), {n} features over valid training steps: means "
        f"{min(means):.2f} to {max(means):.2f}, sds {min(sds):.2f} to {max(sds):.2f}"
        f"{' (first ' + str(len(means)) + ' features)' if len(means) < n else ''}."
    )


def data_warnings(task_info: dict[str, Any] | None, option: str = "task.normalize") -> list[str]:
    """One line per problem: inputs far from standardised without task.normalize, and badly
    unbalanced validation classes."""
    data = _data(task_info)
    out = []
    inputs = data.get("inputs") or {}
    if data.get("normalized") is not True and inputs.get("n_far"):
        i, mean, sd = inputs["far"][0]
        many = inputs["n_far"]
        fix = (
            f"set {option}=true"
            if data.get("normalized") is False
            else "standardise them where the data are built"
        )
        out.append(
            f"{many} input feature{'s are' if many != 1 else ' is'} far from standardised (e.g. feature {i}: "
            f"mean {mean:.3g}, sd {sd:.3g}): unscaled inputs saturate LSTM/GRU gates and make training "
            f"unstable at learning rates that would otherwise be fine; {fix}."
        )
    classes = data.get("classes")
    if classes:
        unbalanced = _unbalanced(classes)
        if unbalanced:
            out.append(unbalanced)
    return out


def _unbalanced(classes: dict[str, Any]) -> str:
    names, train, val = classes["names"], classes["train"], classes["val"]
    present = [i for i, c in enumerate(train) if c > 0]
    if len(present) < 2 or not sum(val):
        return ""
    missing = [names[i] for i in present if val[i] == 0]
    counts = [val[i] for i in present]
    big, small = max(counts), min(counts)
    if not missing and big <= UNBALANCED_RATIO * small:
        return ""
    shares = _shares(val)
    top = max(range(len(val)), key=lambda i: val[i])
    why = (
        f"class{'es' if len(missing) > 1 else ''} {', '.join(missing[:5])} of the training set "
        f"{'are' if len(missing) > 1 else 'is'} missing"
        if missing
        else f"the largest class is {big / small:.0f}x the smallest"
    )
    return (
        f"The validation classes are badly unbalanced ({why}; class {names[top]} holds {shares[top]:.0%}): "
        f"a net that outputs one class scores {shares[top]:.2f}, so accuracy alone hides a collapse to one "
        f"class; use a larger or stratified validation split."
    )
