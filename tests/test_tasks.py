import numpy as np
import pytest
import torch

from sweep.config import AddingTask, DigitsTask, TemporalOrderTask
from sweep.tasks import build_task
from sweep.tasks.scoring import chance_level, item_correct
from sweep.tasks.synthetic import adding_arrays, temporal_order_arrays


def test_temporal_order_recipe_positions_symbols_and_labels():
    rng = np.random.default_rng(0)
    L = 50
    x, y = temporal_order_arrays(rng, 4000, L)
    assert x.shape == (4000, L, 6) and x.dtype == np.float32
    assert np.all(x.sum(-1) == 1.0)  # one-hot every step
    sym = x.argmax(-1)
    marker = sym < 2  # A or B
    assert np.all(marker.sum(1) == 2)  # exactly two markers
    pos = np.sort(np.nonzero(marker)[1].reshape(-1, 2), axis=1)
    assert pos[:, 0].min() >= 5 and pos[:, 0].max() <= 9  # [0.1L, 0.2L)
    assert pos[:, 1].min() >= 25 and pos[:, 1].max() <= 29  # [0.5L, 0.6L)
    v0 = sym[np.arange(4000), pos[:, 0]]
    v1 = sym[np.arange(4000), pos[:, 1]]
    assert np.array_equal(y, v0 + 2 * v1)  # label = v0 + 2 v1
    counts = np.bincount(y, minlength=4) / 4000
    assert np.all(np.abs(counts - 0.25) < 0.03)  # balanced classes


def test_temporal_order_known_solution_scores_100_percent():
    task = build_task(TemporalOrderTask(n_train=100, n_val=500))
    sym = task.x_val.argmax(-1)
    first = torch.where(sym < 2, sym, torch.full_like(sym, 9))
    markers = [row[row < 2] for row in sym]
    labels = torch.tensor([int(m[0] + 2 * m[1]) for m in markers])
    logits = torch.nn.functional.one_hot(labels, 4).float()
    assert item_correct("classification", logits, task.y_val, None).all()
    assert first.shape == sym.shape


def test_adding_recipe_lengths_markers_and_targets():
    rng = np.random.default_rng(1)
    L = 100
    x, y, lengths = adding_arrays(rng, 3000, L)
    assert lengths.min() >= L and lengths.max() <= L + 9  # L + U{0..0.1L-1}
    assert x.shape == (3000, lengths.max(), 2)
    for i in range(50):
        n = lengths[i]
        marks = np.nonzero(x[i, :, 0])[0]
        assert len(marks) == 2
        assert marks[0] < int(n * 0.1)  # p0 in U{0..0.1l-1}
        assert int(n * 0.1) <= marks[1] < int(n * 0.1) + int(n * 0.4)
        assert y[i, 0] == pytest.approx((x[i, marks[0], 1] + x[i, marks[1], 1]) / 2)
        assert np.all(x[i, n:, :] == 0)  # padding is zero
        assert np.all((x[i, :n, 1] >= 0) & (x[i, :n, 1] < 1))


def test_adding_known_solution_scores_100_percent_and_chance_is_mean_predictor():
    task = build_task(AddingTask(length=20, n_train=2000, n_val=1000))
    x = task.x_val
    pred = ((x[:, :, 0] * x[:, :, 1]).sum(1) / 2).unsqueeze(1)
    assert item_correct("regression", pred, task.y_val, 0.04).all()
    mean = task.y_train.mean(0, keepdim=True).expand_as(task.y_val)
    expected = float((((mean - task.y_val) ** 2).mean(-1) < 0.04).float().mean())
    assert chance_level(task) == pytest.approx(expected)
    assert 0.5 < expected < 0.75  # the sum of two uniforms is concentrated near 0.5


def test_task_generation_is_fixed_by_data_seed():
    a = build_task(TemporalOrderTask(n_train=50, n_val=20, data_seed=3))
    b = build_task(TemporalOrderTask(n_train=50, n_val=20, data_seed=3))
    c = build_task(TemporalOrderTask(n_train=50, n_val=20, data_seed=4))
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)


def test_digits_rows_as_steps_stratified_split():
    task = build_task(DigitsTask(val_fraction=0.25))
    assert task.x_train.shape[1:] == (8, 8) and task.x_train.shape[0] + task.x_val.shape[0] == 1797
    assert float(task.x_train.max()) <= 1.0 and float(task.x_train.min()) >= 0.0
    assert task.output_dim == 10
    val_share = torch.bincount(task.y_val, minlength=10).float() / len(task.y_val)
    assert torch.all((val_share - 0.1).abs() < 0.02)
    assert chance_level(task) == pytest.approx(float(val_share.max()))


def test_digits_is_learnable_by_a_linear_model():
    from sklearn.linear_model import LogisticRegression

    task = build_task(DigitsTask())
    clf = LogisticRegression(max_iter=2000).fit(
        task.x_train.reshape(len(task.x_train), -1), task.y_train
    )
    assert clf.score(task.x_val.reshape(len(task.x_val), -1), task.y_val) > 0.9


def test_digits_file_read_equals_scikit_learns_loader():
    from sklearn.datasets import load_digits

    from sweep.tasks.digits import digits_arrays

    images, labels = digits_arrays()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
