"""Validity of the named causes with the function trainer (issue 26): a user's own PyTorch loop
with `GradientMonitor`, swept in-process by `sweep.run_sweep`, has each mechanism injected into
it at epoch K, and the autopsy must name it at K +- 1 in at least 90% of the runs it collapsed
(the NaN also with its module), as tests/test_autopsy_validity.py asks of lrsweep's own loop.

The injections are the user's own code here (an `inject` axis of the grid): one step's gradient
x100, the lr x30 from epoch K, every training label class 0 from epoch K, a NaN written into the
LSTM's weights. The inputs x100 are left to lrsweep's loop on vector_sum: on digits the pixels
classify as well binarized, so the runs survive it (test_autopsy_validity.py says the same).

The suite runs 3 seeds per injection; docs/statistics.md's table is the full sample, 6 seeds:
`LRSWEEP_TEST_FULL=1 python -m pytest -n 0 -s -q tests/test_autopsy_function.py`.
"""

from __future__ import annotations

import math

import pytest
from conftest import FULL_SAMPLES

pytestmark = pytest.mark.slow

K = 6  # the epoch each mechanism is injected at
SEEDS = 6 if FULL_SAMPLES else 3  # docs/statistics.md's table: LRSWEEP_TEST_FULL=1
EXPECTED = {
    "gradient_x100": "gradient_cliff",
    "lr_x30": "step_too_large",
    "labels_one_class": "output_collapse",
    "nan_weight": "nonfinite",
}


def fit(setting, seed, epochs, report):
    """The loop of examples/function_trainer/mytrain.py (digits, a 2-layer LSTM of 32 units,
    SGD with momentum 0.9), with the injection setting["inject"] at the start of epoch K."""
    import torch
    from mytrain import Net, digits
    from torch import nn

    from sweep import GradientMonitor

    inject, k = setting["inject"], 6
    (x, y), (xv, yv) = digits()
    torch.manual_seed(seed)
    model = Net(32, 2)
    opt = torch.optim.SGD(model.parameters(), lr=setting["lr"], momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    monitor = GradientMonitor(model, opt, loss_fn)
    monitor.probe(xv[:64], yv[:64])
    order = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        if epoch == k and inject == "lr_x30":
            for group in opt.param_groups:
                group["lr"] *= 30
        if epoch == k and inject == "labels_one_class":
            y = torch.zeros_like(y)
        if epoch == k and inject == "nan_weight":
            with torch.no_grad():
                model.rnn.weight_hh_l1[0, 0] = math.nan
        model.train()
        losses = []
        for step, idx in enumerate(torch.randperm(len(x), generator=order).split(64)):
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            if epoch == k and step == 0 and inject == "gradient_x100":
                for p in model.parameters():
                    p.grad.mul_(100.0)
            monitor.clip(setting["clip"], batch=(x[idx], y[idx]))
            opt.step()
            losses.append(loss.detach())
        model.eval()
        with torch.no_grad():
            out = model(xv)
            pred = out.argmax(-1)
            report(
                epoch,
                val_acc=float((pred == yv).float().mean()),
                val_loss=float(loss_fn(out, yv)),
                train_loss=float(torch.stack(losses).mean()),
                pred_top_frac=float(torch.bincount(pred, minlength=10).max()) / len(yv),
                **monitor.epoch_metrics(),
            )


def test_an_injected_mechanism_in_a_users_loop_is_named_at_its_epoch(tmp_path, monkeypatch):
    import sys

    from conftest import ROOT

    import sweep

    monkeypatch.syspath_prepend(str(ROOT / "examples" / "function_trainer"))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("mytrain", None)  # other tests write a mytrain.py of their own
    try:
        result = sweep.run_sweep(
            fit,
            grid={"lr": [0.3], "clip": [None], "batch_size": [64], "inject": list(EXPECTED)},
            seeds=SEEDS,
            epochs=12,
            n_val=450,
            chance=0.102,
            results_dir=str(tmp_path / "results"),
        )
    finally:
        sys.modules.pop("mytrain", None)  # the example's, imported by `fit`: theirs come next
    runs = result.runs
    assert len(runs) == SEEDS * len(EXPECTED), runs[["inject", "seed", "outcome"]]
    failures = []
    for inject, expected in EXPECTED.items():
        rows = runs[runs["inject"] == inject]
        collapsed = rows[rows["collapsed"].astype(bool)]
        hits = [
            r["collapse_cause"] == expected
            and not math.isnan(float(r["cause_epoch"]))
            and abs(int(r["cause_epoch"]) - K) <= 1
            and (inject != "nan_weight" or r["nonfinite_origin"] == "rnn")
            for _, r in collapsed.iterrows()
        ]
        chains = list(zip(collapsed["collapse_chain"], collapsed["cause_epoch"]))
        print(f"\n{inject}: collapsed {len(collapsed)} of {len(rows)}; hits {sum(hits)}; {chains}")
        if len(collapsed) < 0.8 * len(rows) or sum(hits) < math.ceil(0.9 * len(collapsed)):
            failures.append((inject, len(collapsed), sum(hits), chains))
    assert not failures, failures
