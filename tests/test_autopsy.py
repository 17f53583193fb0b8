"""The autopsy of a collapsed run (issue 26): hand-made curves with known answers, and seeded
simulations of what noise alone calls and what a mechanism of the stated size gets called."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from sweep.analysis.autopsy import (
    AUTOPSY_COLUMNS,
    CAUSES,
    autopsy,
    autopsy_columns,
    cause_counts,
    onsets,
)

EPOCHS = 20


def stable(seed: int = 0, epochs: int = EPOCHS, noise: float = 0.1) -> dict[str, np.ndarray]:
    """Curves of a run that trains quietly: every signal near a level, with multiplicative (or,
    for shares, additive) noise of the given size."""
    rng = np.random.default_rng(seed)

    def jitter(level, sd=noise):
        return level * np.exp(rng.normal(0, sd, epochs))

    return {
        "val_acc": np.clip(0.9 + rng.normal(0, 0.01, epochs), 0, 1),
        "val_loss": jitter(0.3),
        "train_loss": jitter(0.3),
        "grad_norm_max": jitter(2.0, 2 * noise),
        "grad_norm_mean": jitter(1.0),
        "update_ratio": jitter(0.01),
        "crit_lr": np.full(epochs, 0.8),
        "epoch_lr": np.full(epochs, 0.1),
        "sat_frac": np.clip(0.05 + rng.normal(0, noise / 10, epochs), 0, 1),
        "pred_top_frac": np.clip(0.12 + rng.normal(0, noise / 5, epochs), 0, 1),
        "logit_lse": 3.0 + rng.normal(0, noise, epochs),
    }


def collapsed(curves, epoch, mode="diverged", origin=""):
    return autopsy(curves, epoch, mode, origin)


# --------------------------------------------------------------------------- each mechanism, by hand


def test_a_gradient_cliff_before_the_collapse_is_the_cause_with_its_size():
    c = stable()
    c["grad_norm_max"][11] *= 40  # epoch 12
    a = collapsed(c, 13)
    assert a.chain == ["gradient_cliff"] and a.cause_epoch == 12
    assert "grad_norm_max x" in a.evidence
    assert 25 < a.steps[0].size < 65


def test_a_larger_step_is_too_large_only_when_the_gradient_does_not_explain_it():
    c = stable()
    c["update_ratio"][9:] *= 30  # lr x30 from epoch 10
    assert collapsed(c, 10).chain == ["step_too_large"]
    assert collapsed(c, 10).cause_epoch == 10
    d = stable()
    d["update_ratio"][9:] *= 30  # the same update growth ...
    d["grad_norm_mean"][9:] *= 30  # ... with gradients as much larger: plain SGD on a cliff
    assert "step_too_large" not in collapsed(d, 10).chain


def test_an_lr_past_the_critical_step_is_a_step_too_large():
    c = stable()
    c["crit_lr"][11:] = 0.025  # the lr 0.1 is now 4x the critical step
    a = collapsed(c, 12)
    assert a.chain == ["step_too_large"] and a.cause_epoch == 12
    assert "crit_lr" in a.evidence


def test_saturation_needs_the_gradients_to_fall_with_it_or_most_units_pinned():
    c = stable()
    c["sat_frac"][7:] = 0.2  # epoch 8 on
    c["grad_norm_mean"][8:] /= 10
    a = collapsed(c, 9)
    assert a.chain == ["saturation"] and a.cause_epoch == 8
    assert "gradients fell" in a.evidence
    d = stable()
    d["sat_frac"][7:] = 0.2  # some saturated units whose gradients did not fall: not the mechanism
    assert collapsed(d, 9).chain == ["undetermined"]
    d["sat_frac"][7:] = 0.6  # most of them pinned: too many to train back
    assert collapsed(d, 9).chain == ["saturation"]


def test_an_output_collapse_needs_the_logits_to_grow():
    c = stable()
    c["pred_top_frac"][9:] = 0.98
    c["logit_lse"][9:] += 3.0
    a = collapsed(c, 10)
    assert a.chain == ["output_collapse"] and a.cause_epoch == 10
    d = stable()
    d["pred_top_frac"][9:] = 0.98  # concentrated predictions with small logits
    assert collapsed(d, 10).chain == ["undetermined"]


def test_mechanisms_are_chained_in_time_order():
    c = stable()
    c["grad_norm_max"][9] *= 50  # epoch 10
    c["sat_frac"][10:] = 0.7  # epoch 11
    c["grad_norm_mean"][11:] /= 20
    c["pred_top_frac"][11:] = 0.99  # epoch 12
    c["logit_lse"][11:] += 2.0
    a = collapsed(c, 11, "constant_output")
    assert a.chain == ["gradient_cliff", "saturation", "output_collapse"]
    assert [s.epoch for s in a.steps] == [10, 11, 12]
    assert (a.cause, a.cause_epoch) == ("gradient_cliff", 10)


def test_a_constant_output_collapse_ends_with_output_collapse():
    c = stable()
    c["pred_top_frac"][12:] = 1.0  # the end: one class (no logit growth, so not a rule's onset)
    a = collapsed(c, 13, "constant_output")
    assert a.chain == ["output_collapse"] and a.cause_epoch == 13
    c["grad_norm_max"][11] *= 40
    assert collapsed(c, 13, "constant_output").chain == ["gradient_cliff", "output_collapse"]


def test_a_nonfinite_collapse_ends_with_nonfinite_and_its_origin():
    c = stable(epochs=9)
    a = collapsed(c, 9, "nonfinite", "rnn.l1")
    assert a.chain == ["nonfinite"] and a.cause_epoch == 9 and a.origin == "rnn.l1"
    assert "rnn.l1" in a.evidence
    c["grad_norm_max"][7] *= 100  # epoch 8: the cliff that blew it up
    assert collapsed(c, 9, "nonfinite", "head").chain == ["gradient_cliff", "nonfinite"]


def test_what_the_probe_and_predictions_show_in_the_nans_epoch_is_not_its_cause():
    """A user's loop evaluates the epoch whose weights turned NaN: every prediction is class 0
    (a NaN's argmax), which reads as an output collapse in that epoch; it is not what led there.
    A gradient cliff in the same epoch (its steps came before the NaN) still is."""
    c = stable(epochs=9)
    c["pred_top_frac"][8] = 1.0  # epoch 9, the NaN's
    c["logit_lse"][8] += 5.0
    c["sat_frac"][8] = 0.9
    c["grad_norm_mean"][8] /= 20
    assert collapsed(c, 9, "nonfinite", "rnn").chain == ["nonfinite"]
    assert collapsed(c, 9, "diverged").chain[0] in ("saturation", "output_collapse")  # elsewhere
    c["grad_norm_max"][8] *= 100
    assert collapsed(c, 9, "nonfinite", "rnn").chain == ["gradient_cliff", "nonfinite"]


def test_a_nonfinite_collapse_without_origin_or_mechanism_says_so():
    c = stable(epochs=9)
    a = collapsed(c, 9, "nonfinite", "")
    assert a.chain == ["undetermined", "nonfinite"] and a.cause == "undetermined"
    assert "nonfinite_origin" in a.missing


def test_mechanisms_far_from_the_collapse_are_not_its_chain():
    c = stable()
    c["grad_norm_max"][4] *= 40  # epoch 5, long before
    assert collapsed(c, 15).chain == ["undetermined"]


def test_loss_and_accuracy_alone_are_undetermined_with_the_missing_signals_named():
    rng = np.random.default_rng(3)
    c = {
        "val_acc": np.r_[np.linspace(0.3, 0.9, 10), np.full(10, 0.1)],
        "val_loss": np.r_[np.linspace(2, 0.4, 10), np.full(10, 2.5)],
        "train_loss": 0.5 + rng.normal(0, 0.01, 20),
    }
    row = autopsy_columns(
        c, SimpleNamespace(collapsed=True, collapse_epoch=11, collapse_mode="diverged")
    )
    assert row["collapse_chain"] == row["collapse_cause"] == "undetermined"
    assert row["cause_epoch"] == 11
    assert row["missing_signals"].split(",") == [
        "grad_norm_max",
        "update_ratio",
        "crit_lr",
        "sat_frac",
        "pred_top_frac",
        "logit_lse",
    ]


def test_runs_that_did_not_collapse_leave_the_columns_empty():
    c = stable()
    c["grad_norm_max"][11] *= 40
    row = autopsy_columns(
        c, SimpleNamespace(collapsed=False, collapse_epoch=None, collapse_mode="")
    )
    assert set(row) == set(AUTOPSY_COLUMNS)
    assert row["cause_epoch"] is None and math.isnan(row["cause_size"])
    assert all(row[k] == "" for k in row if k not in ("cause_epoch", "cause_size"))


def test_cause_counts_count_each_cause_of_a_setting():
    rows = [{"collapse_cause": c} for c in ("gradient_cliff", "gradient_cliff", "nonfinite", "")]
    counts = cause_counts(rows)
    assert counts == {
        f"n_cause_{c}": {"gradient_cliff": 2, "nonfinite": 1}.get(c, 0) for c in CAUSES
    }


# --------------------------------------------------------------------------- seeded simulations


def _pseudo_calls(curves, mode="diverged") -> list[set[str]]:
    """The mechanisms the chain would name if the run had collapsed at each epoch from 6 on."""
    return [set(collapsed(curves, e, mode).chain) for e in range(6, EPOCHS + 1)]


@pytest.mark.parametrize("noise", [0.05, 0.15, 0.3])
def test_noise_alone_rarely_names_a_mechanism(noise):
    # 400 stable runs x 15 pseudo-collapse epochs, noise from a steady run to a jittery one.
    calls = {m: 0 for m in CAUSES}
    total = 0
    for seed in range(400):
        for chain in _pseudo_calls(stable(seed, noise=noise)):
            total += 1
            for m in chain:
                calls[m] += 1
    rates = {m: calls[m] / total for m in CAUSES if m != "undetermined"}
    assert all(rate <= 0.01 for rate in rates.values()), rates


@pytest.mark.parametrize(
    "mechanism, inject",
    [
        (
            "gradient_cliff",
            lambda c, i: c["grad_norm_max"].__setitem__(i, c["grad_norm_max"][i] * 20),
        ),
        (
            "step_too_large",
            lambda c, i: c["update_ratio"].__setitem__(slice(i, None), c["update_ratio"][i:] * 10),
        ),
        (
            "saturation",
            lambda c, i: (
                c["sat_frac"].__setitem__(slice(i, None), 0.5),
                c["grad_norm_mean"].__setitem__(slice(i, None), c["grad_norm_mean"][i:] / 5),
            ),
        ),
        (
            "output_collapse",
            lambda c, i: (
                c["pred_top_frac"].__setitem__(slice(i, None), 0.9),
                c["logit_lse"].__setitem__(slice(i, None), c["logit_lse"][i:] + 2.0),
            ),
        ),
    ],
)
def test_a_mechanism_of_the_stated_size_is_named_at_its_epoch(mechanism, inject):
    hits = 0
    runs = 300
    for seed in range(runs):
        c = stable(seed, noise=0.15)
        k = 6 + seed % 12  # epochs 7..18
        inject(c, k)
        a = collapsed(c, k + 1)
        hits += a.cause == mechanism and abs(a.cause_epoch - (k + 1)) <= 1
    assert hits / runs >= 0.95, hits


def test_onsets_read_only_what_the_run_recorded():
    c = {"val_acc": [0.5] * 10, "grad_norm_max": [1.0] * 5 + [100.0] + [1.0] * 4}
    found = onsets(c)
    assert [o.epoch for o in found["gradient_cliff"]] == [6]
    assert found["saturation"] == found["output_collapse"] == found["step_too_large"] == []
    assert math.isfinite(found["gradient_cliff"][0].size)


# --------------------------------------------------------------------------- tables, verdict, figure


def _record(seed: int, curves: dict[str, np.ndarray], **extra) -> dict:
    """A decoded run record: the curves, plus the contract's columns that stable() leaves out."""
    n = len(curves["val_acc"])
    full = {
        "grad_norm_p90": 1.5 * curves["grad_norm_mean"],
        "clip_fraction": np.zeros(n),
        "val_loss_sd": np.full(n, 0.5),
        "train_loss_sd": np.full(n, 0.05),
        **curves,
    }
    return {
        "seed": seed,
        "curves": {k: np.asarray(v, dtype=float) for k, v in full.items()},
        **extra,
    }


def _study(cliff: bool = True):
    """A slice (clip none) of two lrs: lr=0.1 stable, lr=1 with 4 seeds that learn and collapse at
    epoch 13 after a gradient cliff in epoch 12, three of them into one class."""
    from sweep.analysis.tables import build_tables
    from sweep.config import DetectConfig

    runs = []
    for seed in range(4):
        c = stable(seed)
        runs.append(({"lr": 0.1, "clip": None, "batch_size": 32}, _record(seed, c), 0))
        d = stable(seed + 10)
        if cliff:
            d["grad_norm_max"][11] *= 40
        d["val_acc"][12:] = 0.1
        d["val_loss"][12:] = 2.5
        if seed < 3:
            d["sat_frac"][12:] = 0.6
            d["pred_top_frac"][12:] = 1.0
        runs.append(({"lr": 1.0, "clip": None, "batch_size": 32}, _record(seed, d), 1))
    return build_tables(runs, chance=0.1, detect=DetectConfig(), n_val=450)


def test_runs_csv_and_summary_csv_carry_the_autopsy():
    t = _study()
    bad = t.runs[t.runs["lr"] == 1.0]
    assert set(bad["collapse_cause"]) == {"gradient_cliff"}
    assert set(bad["cause_epoch"]) == {12}
    assert list(bad["collapse_chain"]) == ["gradient_cliff>saturation>output_collapse"] * 3 + [
        "gradient_cliff"
    ]
    good = t.runs[t.runs["lr"] == 0.1]
    assert set(good["collapse_chain"]) == {""} and good["cause_epoch"].isna().all()
    row = t.summary[t.summary["lr"] == 1.0].iloc[0]
    assert row["n_cause_gradient_cliff"] == 4 and row["n_cause_undetermined"] == 0


def test_the_verdict_names_the_mechanism_of_each_slice_with_its_advice():
    from sweep.analysis.conclusions import compute_verdicts

    t = _study()
    v = compute_verdicts(t)
    lines = [line.text for line in v.findings if line.topic == "mechanism"]
    p90 = t.summary[t.summary["lr"] == 0.1]["grad_norm_p90"].iloc[0]
    assert len(lines) == 1
    assert lines[0].startswith(
        "At lr=1, batch size 32 without clipping: 4 of 4 collapses began with a gradient cliff "
        "(grad_norm_max x"
    )
    assert (
        f"in the epoch before the collapse; clipping at {p90:.2g}, this slice's p90, would have cut it"
        in lines[0]
    )
    assert "3 ended in saturated units with constant output" in lines[0]
    assert lines[0].endswith(f"Clip at {p90:.2g}.")
    assert "began with a gradient cliff" in v.text("s")


def test_the_figure_aligns_the_collapsed_seeds_and_says_which_signal_is_missing():
    from sweep.report.autopsy_figure import autopsy_figure, autopsy_notes, autopsy_settings
    from sweep.report.figure_base import grid_of

    t = _study()
    g = grid_of(t)
    ((key, stable_key),) = autopsy_settings(g)
    assert key[g.axes.index("lr")] == 1.0 and stable_key[g.axes.index("lr")] == 0.1
    fig = autopsy_figure(t, setting=dict(zip(g.axes, key)), grid=g)
    assert len(fig.axes) == 5
    texts = [x.get_text() for ax in fig.axes for x in ax.texts]
    assert texts == []  # every signal recorded
    assert autopsy_notes(t) == []
    t.curves = t.curves.drop(columns=["crit_lr"])
    fig = autopsy_figure(t, setting=dict(zip(g.axes, key)), grid=grid_of(t))
    assert [x.get_text() for ax in fig.axes for x in ax.texts] == ["crit_lr: not recorded"]
    (note,) = autopsy_notes(t)
    assert "crit_lr" in note
