"""Built-in per-step (echo) and vector-regression (vector_sum) tasks, and the model/optimizer
options trained on them: bidirectional, GRU, dropout, forget-gate bias, weight decay, L2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sweep.config import EchoTask, VectorSumTask, load_config
from sweep.core.errors import UserError
from sweep.tasks import build_task
from sweep.tasks.scoring import chance_level
from sweep.tasks.synthetic import echo_arrays, vector_sum_arrays
from sweep.training import train_setting
from sweep.training.models import build_model

CPU = torch.device("cpu")
ECHO = [
    "task=echo",
    "task.length=10",
    "task.delay=2",
    "task.n_train=256",
    "task.n_val=64",
    "model.hidden_size=16",
    "model.layers=1",
    "optimizer=adam",
    "epochs=5",
]
VECTOR = [
    "task=vector_sum",
    "task.length=10",
    "task.n_train=256",
    "task.n_val=64",
    "model.hidden_size=16",
    "model.layers=1",
    "optimizer=adam",
    "epochs=5",
]
SETTING = {"lr": 0.02, "clip": 1.0, "batch_size": 32}


def train(overrides, setting=SETTING, seeds=(0,)):
    cfg = load_config(list(overrides))
    task = build_task(cfg.task)
    return task, train_setting(task, cfg, setting, list(seeds), CPU)


def assert_learns(task, record, factor=0.9):
    loss = record.curves["train_loss"]
    assert record.nonfinite is None and loss[-1] < factor * loss[0]
    if task.is_classification:
        assert max(record.curves["val_acc"]) > task.chance() + 0.1


# --------------------------------------------------------------------------- recipes


def test_echo_recipe_targets_are_the_inputs_delay_steps_back():
    x, y = echo_arrays(np.random.default_rng(0), 50, length=12, delay=3, symbols=5)
    assert x.shape == (50, 12, 5) and y.shape == (50, 12) and y.dtype == np.int64
    sym = x.argmax(-1)
    assert np.all(x.sum(-1) == 1.0)
    assert np.all(y[:, :3] == 0) and np.array_equal(y[:, 3:], sym[:, :-3] + 1)
    task = build_task(EchoTask(length=12, delay=3, symbols=5, n_train=40, n_val=400))
    assert task.per_step and task.output_dim == 6
    assert chance_level(task) == pytest.approx(
        float(torch.bincount(task.y_val.reshape(-1)).max()) / task.y_val.numel()
    )


def test_vector_sum_recipe_targets_are_a_fixed_projection_of_the_scaled_sum():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    x, y = vector_sum_arrays(rng, 100, 16, w)
    assert x.shape == (100, 16, 4) and y.shape == (100, 3)
    assert np.allclose(y, (x.sum(1) / 4.0) @ w.T, atol=1e-5)
    task = build_task(VectorSumTask(n_train=500, n_val=500, dim=6))
    assert task.kind == "regression" and task.output_dim == 6 and task.tolerance == 0.04
    assert 0.6 < float(task.y_train.std()) < 1.4  # components ~ N(0, 1)
    assert chance_level(task) < 0.05  # predicting the mean is almost never within tolerance
    again = build_task(VectorSumTask(n_train=500, n_val=500, dim=6))
    assert torch.equal(task.y_val, again.y_val)  # fixed by data_seed


@pytest.mark.parametrize(
    "override,needle",
    [
        ("task.delay=0", "task.delay: must be in [1, task.length=20)"),
        ("task.delay=20", "task.delay: must be in [1, task.length=20)"),
        ("task.symbols=1", "task.symbols: must be >= 2"),
    ],
)
def test_bad_echo_options(override, needle):
    with pytest.raises(UserError) as info:
        load_config(["task=echo", override])
    assert needle in str(info.value)


def test_bad_vector_sum_dim():
    with pytest.raises(UserError, match=r"task\.dim: must be >= 1"):
        load_config(["task=vector_sum", "task.dim=0"])


# --------------------------------------------------------------------------- training


def test_per_step_echo_learns():
    task, (r,) = train(ECHO)
    assert_learns(task, r)


def test_vector_regression_learns_with_mse():
    task, (r,) = train(VECTOR)
    assert task.kind == "regression" and task.output_dim > 1
    assert_learns(task, r, factor=0.7)
    assert all(np.isnan(p) for p in r.curves["pred_top_frac"])  # no classes in regression


def test_bidirectional_per_step():
    task, (r,) = train(ECHO + ["model.bidirectional=true"])
    assert_learns(task, r)


def test_gru_two_layers_with_dropout_on_vector_regression():
    task, (r,) = train(
        VECTOR + ["model=gru", "model.layers=2", "model.dropout=0.2", "model.hidden_size=12"]
    )
    assert_learns(task, r, factor=0.9)


def test_forget_gate_bias_is_set_and_trains():
    cfg = load_config(ECHO + ["model.forget_bias=1.0"])
    base = load_config(ECHO)
    task = build_task(cfg.task)
    h = cfg.model.hidden_size
    with_bias, without = build_model(cfg.model, task, seed=0), build_model(base.model, task, seed=0)
    diff = with_bias.rnn.bias_ih_l0 - without.rnn.bias_ih_l0  # gate order i, f, g, o
    assert (
        torch.allclose(diff[h : 2 * h], torch.ones(h))
        and torch.all(diff[:h] == 0)
        and torch.all(diff[2 * h :] == 0)
    )
    _, (r,) = train(ECHO + ["model.forget_bias=1.0"])
    assert_learns(task, r)


def _weight_norm(overrides, setting):
    cfg = load_config(list(overrides))
    task = build_task(cfg.task)
    from sweep.training import SeedTrainer, SettingSpec

    trainer = SeedTrainer(task, SettingSpec.build(cfg, setting, [0]), 0, CPU)
    for _ in range(cfg.epochs):
        trainer.run_epoch()
    return trainer.record, float(sum((p.detach() ** 2).sum() for p in trainer.weights))


@pytest.mark.parametrize("option", ["optimizer.weight_decay=0.01", "optimizer.l2=0.002"])
def test_weight_decay_and_l2_shrink_weights_and_still_learn(option):
    plain_record, plain = _weight_norm(VECTOR, SETTING)
    record, shrunk = _weight_norm(VECTOR + [option], SETTING)
    assert shrunk < plain  # the penalty pulls the weights towards zero
    assert (
        record.nonfinite is None
        and record.curves["train_loss"][-1] < 0.8 * record.curves["train_loss"][0]
    )


@pytest.mark.parametrize(
    "optimizer,lr",
    [
        (["optimizer=sgd", "optimizer.nesterov=true"], 0.3),
        (["optimizer=rmsprop"], 0.005),
        (["optimizer=adamw"], 0.02),
    ],
)
def test_other_optimizers_learn_per_step(optimizer, lr):
    task, (r,) = train(ECHO + optimizer, {**SETTING, "lr": lr})
    assert_learns(task, r, factor=0.95)
