"""GradientMonitor's collapse signals for a user's PyTorch loop (issue 26, item 5): the recurrent
recomputation is the modules' own arithmetic, saturation and crit_lr have known answers on
hand-made cases, a stable run gives sane values, and a NaN is traced to its module."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sweep import GradientMonitor
from sweep.core.signal_rules import (
    CRIT_LADDER,
    CRIT_NO_RISE,
    SIGMOID_MARGIN,
    TANH_LIMIT,
    ladder_bisection,
)
from sweep.trainers.saturation import RecurrentTap, rerun

RECURRENT = [
    (nn.LSTM, {}),
    (nn.GRU, {}),
    (nn.RNN, {}),
    (nn.LSTM, {"num_layers": 2, "bidirectional": True}),
    (nn.GRU, {"num_layers": 3, "bidirectional": True, "batch_first": False}),
    (nn.LSTM, {"num_layers": 2, "proj_size": 3}),
]


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("cls,kw", RECURRENT, ids=lambda v: getattr(v, "__name__", str(v)))
def test_the_step_by_step_rerun_is_the_modules_own_arithmetic(cls, kw):
    """Padded, packed (uneven lengths, reversed directions within each length) and with an
    initial state: the recomputed last layer equals what the fused module returns."""
    torch.manual_seed(0)
    kw = dict(kw)
    batch_first = kw.pop("batch_first", True)
    m = cls(5, 7, batch_first=batch_first, **kw).eval()
    x = torch.randn(4, 6, 5) * 3
    xin = x if batch_first else x.transpose(0, 1)
    with torch.no_grad():
        out, _ = m(xin)
        out = out if batch_first else out.transpose(0, 1)
        _, again = rerun(m, xin, None)
        assert torch.allclose(out, again, atol=1e-5)

        packed = pack_padded_sequence(
            xin, torch.tensor([6, 3, 5, 1]), batch_first=batch_first, enforce_sorted=False
        )
        pout, _ = pad_packed_sequence(m(packed)[0], batch_first=True)
        _, again = rerun(m, packed, None)
        assert torch.allclose(pout, again[:, : pout.shape[1]], atol=1e-5)
        assert (again[1, 3:] == 0).all()  # padding stays zero, as the module returns it

        layers = m.num_layers * (2 if m.bidirectional else 1)
        h0 = torch.randn(layers, 4, getattr(m, "proj_size", 0) or 7)
        hx = (h0, torch.randn(layers, 4, 7)) if cls is nn.LSTM else h0
        out, _ = m(xin, hx)
        _, again = rerun(m, xin, hx)
        assert torch.allclose(out if batch_first else out.transpose(0, 1), again, atol=1e-5)


def _counts(model, x):
    tap = RecurrentTap(model)
    with torch.no_grad(), tap:
        model(x)
    return {k: (float(s), float(t)) for k, (s, t) in tap.saturation().items()}


def test_saturation_counts_have_known_answers():
    """Zero weights: every gate at 0.5 and every tanh at 0, nothing saturated. Huge weights and
    inputs of one sign: every gate and the candidate at their rails, and the cell counts up by
    one per step (c_t = t + 1), so h = tanh(c_t) passes 0.97 from the third step on (tanh 2 =
    0.964, tanh 3 = 0.995). Totals are gates x units x steps x sequences (LSTM: i, f, o, g and h
    = 5 per unit)."""
    lstm = nn.LSTM(3, 4, batch_first=True)
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
    x = torch.ones(2, 5, 3)
    assert _counts(lstm, x) == {"(model).l0": (0.0, 5 * 4 * 5 * 2)}
    with torch.no_grad():
        for p in lstm.parameters():
            p.fill_(10.0)
    assert _counts(lstm, x) == {"(model).l0": (200.0 - 2 * 4 * 2, 200.0)}  # h at steps 1, 2

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.GRU(3, 4, num_layers=2, batch_first=True)
            self.cell = nn.LSTMCell(4, 2)
            self.relu_rnn = nn.RNN(3, 2, nonlinearity="relu", batch_first=True)

        def forward(self, x):
            out, _ = self.enc(x)
            self.relu_rnn(x)
            hc = None
            for t in range(out.shape[1]):  # the cell, called once per step
                hc = self.cell(out[:, t], hc)
            return hc[0]

    net = Net()
    counts = _counts(net, x)
    assert set(counts) == {"enc.l0", "enc.l1", "cell"}  # GRU: r, z, n, h = 4 per unit
    assert counts["enc.l1"][1] == 4 * 4 * 5 * 2 and counts["cell"][1] == 5 * 2 * 5 * 2
    assert RecurrentTap(net).unsupported == ["relu_rnn (RNN with relu: nothing saturates)"]


class Digits(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.rnn = nn.LSTM(4, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, 4, generator=g)
    y = (x[:, :, 0].sum(1) > 0).long() + (x[:, :, 1].sum(1) > 1).long()
    return x, y


def _train(monitor, model, opt, x, y, epochs, clip=None, before_epoch=None):
    rows = []
    for epoch in range(1, epochs + 1):
        if before_epoch:
            before_epoch(epoch)
        for idx in torch.arange(len(x)).split(16):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            monitor.clip(clip, batch=(x[idx], y[idx]))
            opt.step()
        rows.append(monitor.epoch_metrics())
    return rows


def test_a_stable_run_gives_every_column_with_sane_values():
    torch.manual_seed(0)
    model = Digits()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    monitor = GradientMonitor(model, opt)
    x, y = _data()
    monitor.probe(x[:64], y[:64])
    rows = _train(monitor, model, opt, x, y, epochs=3, clip=1.0)
    rungs = [0.05 * m for m in (*CRIT_LADDER, CRIT_NO_RISE)]
    expected = {
        "grad_norm_mean",
        "grad_norm_max",
        "grad_norm_p90",
        "clip_fraction",
        "update_ratio",
        "epoch_lr",
        "sat_frac",
        "crit_lr",
        "logit_lse",
        *(
            f"{k}/{g}"
            for k in ("grad_norm_mean", "grad_norm_max", "update_ratio")
            for g in ("rnn", "head")
        ),
        "sat_frac/rnn.l0",
        "sat_frac/rnn.l1",
    }
    for row in rows:
        assert set(row) == expected
        assert 0 < row["update_ratio"] < 0.1 and math.isfinite(row["update_ratio/head"])
        assert 0 <= row["sat_frac"] <= 1 and 0 <= row["sat_frac/rnn.l1"] <= 1
        assert any(math.isclose(row["crit_lr"], r, rel_tol=1e-6) for r in rungs)
        assert row["epoch_lr"] == pytest.approx(0.05)  # the optimizer's lr, as lrsweep's loop logs
        assert math.log(3) - 1e-4 <= row["logit_lse"] < 20  # lse of 3 logits >= log 3 at a tie
    assert monitor.nonfinite_origin is None


def test_the_old_api_still_gives_the_gradient_columns():
    """GradientMonitor(model) + clip() + epoch_metrics(), as before: the gradient columns only."""
    torch.manual_seed(0)
    model = Digits()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = _data(32)
    (row,) = _train(GradientMonitor(model), model, opt, x, y, epochs=1, clip=0.01)
    assert set(row) == {
        "grad_norm_mean",
        "grad_norm_max",
        "grad_norm_p90",
        "clip_fraction",
        *(f"{k}/{g}" for k in ("grad_norm_mean", "grad_norm_max") for g in ("rnn", "head")),
    }
    assert row["clip_fraction"] == 1.0


def test_the_probe_leaves_weights_and_modes_exactly_as_they_were():
    torch.manual_seed(0)
    model = Digits()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    monitor = GradientMonitor(model, opt)
    x, y = _data(32)
    monitor.probe(x, y)
    _train(monitor, model, opt, x, y, epochs=1)  # its steps keep their batches for crit_lr
    model.head.eval()  # a user's own mix of modes is kept
    before = [p.detach().clone() for p in model.parameters()]
    row = monitor.epoch_metrics()
    assert "crit_lr" in row
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert model.training and model.rnn.training and not model.head.training


@pytest.mark.parametrize("layer", ["rnn", "head"])
def test_a_nan_written_into_one_layer_is_named_as_the_origin(layer):
    torch.manual_seed(0)
    model = Digits()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = GradientMonitor(model, opt)
    x, y = _data(48)

    def poison(epoch):
        if epoch == 2:
            with torch.no_grad():
                next(getattr(model, layer).parameters())[0, 0] = math.nan

    rows = _train(monitor, model, opt, x, y, epochs=3, before_epoch=poison)
    assert [r.get(f"nonfinite_origin/{layer}") for r in rows] == [None, 1.0, None]
    assert not any(k.startswith("nonfinite_origin") for k in rows[0] | rows[2])
    assert monitor.nonfinite_origin == layer


class _InfGrad(torch.autograd.Function):
    """Identity forward, an infinite gradient backward: a blow-up that starts in backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * math.inf


class Blows(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.middle = nn.Linear(4, 4)
        self.last = nn.Linear(4, 2)

    def forward(self, x):
        return self.last(_InfGrad.apply(self.middle(self.first(x))))


def test_a_gradient_that_blows_up_in_backward_names_the_layer_nearest_the_output():
    """Forward finite, backward infinite from `middle`'s output down: `last` keeps finite
    gradients, `middle` is the first (backward order) whose gradient is not finite."""
    torch.manual_seed(0)
    model = Blows()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model, opt)
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()
    monitor.clip(None)
    opt.step()
    row = monitor.epoch_metrics()
    assert row.get("nonfinite_origin/middle") == 1.0 and monitor.nonfinite_origin == "middle"


@pytest.mark.parametrize("lr", [0.05, 0.2, 0.6])
def test_crit_lr_is_the_first_ladder_step_past_the_parabolas_rise(lr):
    """Least squares with plain SGD: along the step's direction, from the weights before it,
    the batch's loss is a parabola, so the step size where it starts to rise is known exactly;
    crit_lr is the smallest ladder step above it, or 16 lr when even 8 lr does not reach it."""
    torch.manual_seed(0)
    x, w_true = torch.randn(64, 5), torch.randn(5, 1)
    y = x @ w_true
    model = nn.Linear(5, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    monitor = GradientMonitor(model, opt, loss_fn=nn.functional.mse_loss)
    nn.functional.mse_loss(model(x), y).backward()
    monitor.clip(None, batch=(x, y))
    g = model.weight.grad.detach().T.clone()  # d = -g per unit lr
    opt.step()
    hess = 2 * x.T @ x / len(x)
    # L(w0 - eta g) - L(w0) = -eta |g|^2 + eta^2 / 2 g'Hg rises past eta* = 2 |g|^2 / g'Hg
    eta_star = float(2 * (g * g).sum() / (g.T @ hess @ g))
    rungs = [lr * m for m in CRIT_LADDER]
    expected = min((r for r in rungs if r > eta_star), default=CRIT_NO_RISE * lr)
    assert min(abs(r / eta_star - 1) for r in rungs) > 0.01  # no rung on the edge
    assert monitor.epoch_metrics()["crit_lr"] == pytest.approx(expected)


def test_the_definitions_are_those_of_lrsweeps_own_loop():
    """One meaning per column whoever trained: the thresholds and crit_lr's ladder of
    sweep.core.signal_rules (GradientMonitor, the Keras and Lightning callbacks) are the
    built-in loop's, and the bisection finds the first rung past any crossing."""
    from sweep.training import saturation, signals

    assert CRIT_LADDER == signals.LADDER and CRIT_NO_RISE == 2 * signals.LADDER[-1]
    assert (SIGMOID_MARGIN, TANH_LIMIT) == (saturation.SIGMOID_MARGIN, saturation.TANH_LEVEL)
    for crossing in (0.01, 0.2, 0.5, 0.99, 1.5, 3.0, 7.9, 100.0):
        calls: list[float] = []

        def rises(m: float, c: float = crossing, seen: list = calls) -> bool:
            seen.append(m)
            return m > c

        found = ladder_bisection(rises)
        assert found == min((m for m in CRIT_LADDER if m > crossing), default=CRIT_NO_RISE)
        assert len(calls) == 3


def test_close_removes_every_hook():
    model = Digits()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = GradientMonitor(model, opt)
    monitor.close()
    assert all(not m._forward_hooks for m in model.modules())
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
