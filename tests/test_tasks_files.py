"""task=file: .npz and long-format .csv/.parquet user data, targets, splits, padding, bad data."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from sweep.config import FileTask, load_config
from sweep.core.errors import UserError
from sweep.tasks import build_task
from sweep.tasks.files import build_file
from sweep.training import train_setting

CPU = torch.device("cpu")
SETTING = {"lr": 0.02, "clip": 1.0, "batch_size": 32}


def easy_sequences(n: int = 240, t: int = 12, f: int = 3, seed: int = 0, variable: bool = True):
    """Noisy sequences whose class (0..2) sets the mean of feature 0; lengths in [t/2, t]."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(0.0, 0.5, size=(n, t, f)).astype(np.float32)
    x[:, :, 0] += (y[:, None] - 1.0) * 1.5
    lengths = rng.integers(t // 2, t + 1, size=n) if variable else np.full(n, t)
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
    return x, y.astype(np.int64), lengths.astype(np.int64)


def to_long(x, y, lengths, label_name="label", seq_ids=None) -> pd.DataFrame:
    """The long format: one row per valid step (shuffled, so reading must sort)."""
    rows = []
    for i in range(len(x)):
        for s in range(int(lengths[i])):
            label = y[i] if np.ndim(y[i]) == 0 else y[i][s]
            rows.append(
                {
                    "seq": seq_ids[i] if seq_ids else f"s{i:04d}",
                    "step": 10 * s,
                    **{f"f{k}": float(x[i, s, k]) for k in range(x.shape[2])},
                    label_name: label,
                }
            )
    df = pd.DataFrame(rows)
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True)


def train_file(path, extra=(), setting=SETTING, epochs=4, seeds=(0,)):
    cfg = load_config(
        [
            "task=file",
            f"task.path={path}",
            "model.hidden_size=12",
            "model.layers=1",
            f"epochs={epochs}",
            "optimizer=adam",
            *extra,
        ]
    )
    task = build_task(cfg.task)
    return task, train_setting(task, cfg, setting, list(seeds), CPU)


def assert_learns(task, record, margin=0.1):
    loss = record.curves["train_loss"]
    assert record.nonfinite is None and loss[-1] < loss[0]
    assert max(record.curves["val_acc"]) > task.chance() + margin


# --------------------------------------------------------------------------- npz


def test_npz_classification_remaps_labels_and_learns(tmp_path):
    x, y, lengths = easy_sequences()
    labels = np.array([10, 20, 30])[y]  # any integers: sorted distinct values become 0..C-1
    np.savez(tmp_path / "d.npz", x=x, y=labels, lengths=lengths)
    task, (r,) = train_file(tmp_path / "d.npz")
    assert task.kind == "classification" and task.output_dim == 3 and not task.per_step
    assert set(task.y_train.unique().tolist()) == {0, 1, 2}
    if hasattr(task, "info"):
        assert task.info["classes"] == {0: 10, 1: 20, 2: 30}
    assert_learns(task, r)


def test_npz_regression_vector_targets_learn(tmp_path):
    x, _, lengths = easy_sequences(variable=False)
    y = np.stack([x[:, :, 0].mean(1), x[:, :, 1].mean(1) * 2], axis=1).astype(np.float32)
    np.savez(tmp_path / "r.npz", x=x, y=y)
    task, (r,) = train_file(
        tmp_path / "r.npz", ["task.tolerance=0.1"], setting={**SETTING, "lr": 0.03}
    )
    assert task.kind == "regression" and task.output_dim == 2 and task.tolerance == 0.1
    assert task.lengths_train is None  # every sequence is full length: no packing needed
    assert r.curves["train_loss"][-1] < 0.7 * r.curves["train_loss"][0]
    assert r.curves["val_loss"][-1] < r.curves["val_loss"][0]


def test_npz_two_dimensional_x_is_one_feature(tmp_path):
    x, y, _ = easy_sequences(variable=False)
    np.savez(tmp_path / "d.npz", x=x[:, :, 0], y=y)
    task = build_file(FileTask(path=str(tmp_path / "d.npz")))
    assert task.x_train.shape[1:] == (12, 1) and task.input_dim == 1


def test_npz_per_step_labels_inferred_from_shape_and_learn(tmp_path):
    x, _, lengths = easy_sequences(n=160)
    y = (x[:, :, 0] > 0).astype(np.int64)  # per step: sign of feature 0 (easy)
    y[np.arange(12)[None, :] >= lengths[:, None]] = -1  # padded steps: anything, never scored
    np.savez(tmp_path / "p.npz", x=x, y=y, lengths=lengths)
    task, (r,) = train_file(tmp_path / "p.npz", setting={**SETTING, "lr": 0.03})
    assert task.per_step and task.kind == "classification" and task.output_dim == 2
    assert task.y_train.min() >= 0  # padding labels replaced by a harmless class
    assert_learns(task, r)


def test_npz_per_step_regression_targets(tmp_path):
    x, _, lengths = easy_sequences(n=120, variable=True)
    y = np.cumsum(x[:, :, :2], axis=1) / 4.0  # [N, T, 2] running sums
    y[np.arange(12)[None, :] >= lengths[:, None]] = np.nan  # NaN in padding is ignored
    np.savez(tmp_path / "q.npz", x=x, y=y, lengths=lengths)
    task, (r,) = train_file(
        tmp_path / "q.npz", ["task.normalize=false"], setting={**SETTING, "lr": 0.03}
    )
    assert task.per_step and task.kind == "regression" and task.y_train.shape[1:] == (12, 2)
    assert torch.isfinite(task.y_train).all()
    assert r.curves["train_loss"][-1] < r.curves["train_loss"][0]


def test_per_step_false_reads_a_float_matrix_as_vector_target(tmp_path):
    x, _, _ = easy_sequences(n=40, variable=False)
    np.savez(tmp_path / "v.npz", x=x, y=x[:, :, 0].copy())  # [N, T] floats
    assert build_file(FileTask(path=str(tmp_path / "v.npz"))).y_train.shape[1:] == (
        12,
    )  # vector, D=T
    per_step = build_file(FileTask(path=str(tmp_path / "v.npz"), per_step=True))
    assert per_step.per_step and per_step.y_train.shape[1:] == (12, 1)


def test_kind_classification_accepts_integral_floats_and_regression_accepts_ints(tmp_path):
    x, y, _ = easy_sequences(n=60, variable=False)
    np.savez(tmp_path / "c.npz", x=x, y=y.astype(np.float64))
    assert (
        build_file(FileTask(path=str(tmp_path / "c.npz"))).kind == "regression"
    )  # auto: float -> regression
    assert build_file(FileTask(path=str(tmp_path / "c.npz"), kind="classification")).output_dim == 3
    np.savez(tmp_path / "i.npz", x=x, y=y)
    assert (
        build_file(FileTask(path=str(tmp_path / "i.npz"), kind="regression")).y_train.dtype
        == torch.float32
    )


def test_padding_never_changes_curves(tmp_path):
    x, y, lengths = easy_sequences(n=96, t=10)
    np.savez(tmp_path / "a.npz", x=x, y=y, lengths=lengths)
    padded = np.concatenate([x, np.zeros((96, 7, 3), np.float32)], axis=1)  # 7 more zero steps
    padded[:, 10:, 1] = 123.0  # and garbage after every sequence's end
    np.savez(tmp_path / "b.npz", x=padded, y=y, lengths=lengths)
    extra = ["model.bidirectional=true"]
    _, ra = train_file(tmp_path / "a.npz", extra, epochs=2, seeds=(0, 1))
    _, rb = train_file(tmp_path / "b.npz", extra, epochs=2, seeds=(0, 1))
    assert [r.curves for r in ra] == [r.curves for r in rb]


def test_padding_is_masked_inside_the_model(tmp_path):
    """Below the data layer too: extra padded steps do not change a per-step model's outputs."""
    from sweep.training.models import build_model

    x, _, lengths = easy_sequences(n=32, t=10)
    np.savez(tmp_path / "p.npz", x=x, y=(x[:, :, 0] > 0).astype(np.int64), lengths=lengths)
    cfg = load_config(
        [
            "task=file",
            f"task.path={tmp_path / 'p.npz'}",
            "model.hidden_size=8",
            "model.bidirectional=true",
        ]
    )
    task = build_task(cfg.task)
    net = build_model(cfg.model, task, seed=0).eval()
    xb, lb = task.x_val, task.lengths_val
    longer = torch.cat([xb, torch.randn(len(xb), 5, xb.shape[2])], dim=1)
    with torch.no_grad():
        a, b = net(xb, lb), net(longer, lb)[:, : xb.shape[1]]
    mask = torch.arange(xb.shape[1])[None, :] < lb[:, None]
    assert torch.equal(a[mask], b[mask])


def test_normalize_uses_training_statistics_over_valid_steps(tmp_path):
    x, y, lengths = easy_sequences()
    x = x * 5.0 + 100.0
    x[np.arange(12)[None, :] >= lengths[:, None]] = 0.0
    np.savez(tmp_path / "d.npz", x=x, y=y, lengths=lengths)
    task = build_file(FileTask(path=str(tmp_path / "d.npz")))
    valid = torch.arange(12)[None, :] < task.lengths_train[:, None]
    steps = task.x_train[valid]
    assert torch.allclose(steps.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(steps.std(0, unbiased=False), torch.ones(3), atol=1e-4)
    assert (task.x_train[~valid] == 0).all() and (
        task.x_val[~(torch.arange(12)[None, :] < task.lengths_val[:, None])] == 0
    ).all()
    raw = build_file(FileTask(path=str(tmp_path / "d.npz"), normalize=False))
    assert float(raw.x_train[:, 0].mean()) > 50


def test_split_is_stratified_and_fixed_by_data_seed(tmp_path):
    x, y, lengths = easy_sequences(n=300)
    np.savez(tmp_path / "d.npz", x=x, y=y, lengths=lengths)
    a = build_file(FileTask(path=str(tmp_path / "d.npz"), val_fraction=0.2, data_seed=1))
    b = build_file(FileTask(path=str(tmp_path / "d.npz"), val_fraction=0.2, data_seed=1))
    c = build_file(FileTask(path=str(tmp_path / "d.npz"), val_fraction=0.2, data_seed=2))
    assert a.n_train == 240 and a.x_val.shape[0] == 60
    assert torch.equal(a.x_val, b.x_val) and not torch.equal(a.x_val, c.x_val)
    assert torch.bincount(a.y_val).tolist() == [20, 20, 20]  # stratified


def test_val_path_is_a_separate_validation_file(tmp_path):
    x, y, lengths = easy_sequences(n=200)
    np.savez(tmp_path / "train.npz", x=x[:150], y=y[:150], lengths=lengths[:150])
    np.savez(tmp_path / "val.npz", x=x[150:, :9], y=y[150:], lengths=np.minimum(lengths[150:], 9))
    task = build_file(
        FileTask(path=str(tmp_path / "train.npz"), val_path=str(tmp_path / "val.npz"))
    )
    assert task.n_train == 150 and task.x_val.shape == (50, 12, 3)  # padded to a common length


# --------------------------------------------------------------------------- long format


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_long_format_reads_the_same_data_as_npz(tmp_path, suffix):
    x, y, lengths = easy_sequences(n=90)
    np.savez(tmp_path / "d.npz", x=x, y=y, lengths=lengths)
    df = to_long(x, y, lengths)
    path = tmp_path / f"d{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    a = build_file(FileTask(path=str(tmp_path / "d.npz")))
    b = build_file(FileTask(path=str(path)))
    for field in ("x_train", "y_train", "x_val", "y_val", "lengths_train", "lengths_val"):
        assert torch.allclose(getattr(a, field).double(), getattr(b, field).double(), atol=1e-5), (
            field
        )


def test_csv_long_format_learns_with_string_labels_and_named_columns(tmp_path):
    x, y, lengths = easy_sequences()
    df = to_long(x, np.array(["jump", "run", "walk"])[y], lengths, label_name="activity")
    df = df.rename(columns={"seq": "id", "step": "t"})
    df["note"] = "ignored"
    df.to_csv(tmp_path / "acts.csv", index=False)
    task, (r,) = train_file(
        tmp_path / "acts.csv",
        [
            "task.seq_column=id",
            "task.step_column=t",
            "task.label_columns=activity",
            "task.feature_columns='f0,f1,f2'",
        ],
    )
    assert task.kind == "classification" and task.output_dim == 3 and task.lengths_train is not None
    if hasattr(task, "info"):
        assert task.info["classes"] == {0: "jump", 1: "run", 2: "walk"}
    assert_learns(task, r)


def test_csv_label_that_varies_within_a_sequence_gives_per_step_targets(tmp_path):
    x, _, lengths = easy_sequences(n=120)
    y = (x[:, :, 0] > 0).astype(np.int64)
    to_long(x, y, lengths).to_csv(tmp_path / "p.csv", index=False)
    task, (r,) = train_file(tmp_path / "p.csv", setting={**SETTING, "lr": 0.03})
    assert task.per_step and task.y_train.shape == task.x_train.shape[:2]
    assert_learns(task, r)


def test_csv_several_label_columns_form_a_regression_vector(tmp_path):
    x, _, lengths = easy_sequences(n=120)
    df = to_long(x, np.zeros(120), lengths).drop(columns="label")
    sums = df.groupby("seq")[["f0", "f1"]].transform("mean")
    df["y1"], df["y2"] = sums["f0"], sums["f1"]
    df.to_csv(tmp_path / "r.csv", index=False)
    task, (r,) = train_file(
        tmp_path / "r.csv", ["task.label_columns='y1,y2'", "task.tolerance=0.1"]
    )
    assert task.kind == "regression" and task.output_dim == 2 and not task.per_step
    assert r.curves["train_loss"][-1] < r.curves["train_loss"][0]


# --------------------------------------------------------------------------- bad data


def _npz(tmp_path, name="bad.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


X, Y, L = easy_sequences(n=30, t=6, variable=False)


def _bad_cases():
    nan_x = X.copy()
    nan_x[3, 2, 1] = np.nan
    inf_y = np.ones((30, 2))
    inf_y[4, 1] = np.inf
    return [
        ("missing_file", lambda p: str(p / "nope.npz"), {}, "task.path: file", "does not exist"),
        (
            "unknown_extension",
            lambda p: str(p / "d.txt"),
            {},
            "unknown file type '.txt'",
            "pass an .npz",
        ),
        ("folder", lambda p: str(p), {}, "is a folder, not a file", ""),
        (
            "not_an_archive",
            lambda p: _write(p / "g.npz", b"garbage bytes"),
            {},
            "is not an .npz archive",
            "",
        ),
        ("npy_array", lambda p: _npy_named_npz(p), {}, "is a single .npy array", ""),
        (
            "object_array",
            lambda p: _npz(p, x=X, y=np.array([{"a": 1}] * 30, dtype=object)),
            {},
            "cannot read",
            "Object arrays",
        ),
        (
            "missing_y",
            lambda p: _npz(p, x=X, labels=Y),
            {},
            "has no array 'y' (arrays: labels, x)",
            "",
        ),
        (
            "x_4d",
            lambda p: _npz(p, x=X[..., None], y=Y),
            {},
            "array x must have shape [N, T, F]",
            "(30, 6, 3, 1)",
        ),
        (
            "x_strings",
            lambda p: _npz(p, x=np.full((30, 6, 1), "a"), y=Y),
            {},
            "array x must hold numbers",
            "",
        ),
        (
            "n_mismatch",
            lambda p: _npz(p, x=X, y=Y[:20]),
            {},
            "array y must have one entry per sequence (x has N=30)",
            "(20,)",
        ),
        (
            "fractional_labels",
            lambda p: _npz(p, x=X, y=Y + 0.5),
            {"kind": "classification"},
            "class labels must be integers",
            "0.5",
        ),
        (
            "one_class",
            lambda p: _npz(p, x=X, y=np.zeros(30, np.int64)),
            {},
            "at least 2 classes, found 1",
            "",
        ),
        (
            "nan_input",
            lambda p: _npz(p, x=nan_x, y=Y),
            {},
            "inputs x hold NaN or inf (first at sequence 3, step 2)",
            "",
        ),
        (
            "inf_target",
            lambda p: _npz(p, x=X, y=inf_y),
            {},
            "targets y hold NaN or inf (first at sequence 4)",
            "",
        ),
        (
            "zero_length",
            lambda p: _npz(p, x=X, y=Y, lengths=np.where(np.arange(30) == 5, 0, 6)),
            {},
            "lengths must be in 1..T=6, got 0 for sequence 5",
            "",
        ),
        (
            "length_too_long",
            lambda p: _npz(p, x=X, y=Y, lengths=np.full(30, 7)),
            {},
            "lengths must be in 1..T=6, got 7",
            "",
        ),
        (
            "lengths_shape",
            lambda p: _npz(p, x=X, y=Y, lengths=np.full(29, 6)),
            {},
            "array lengths must have shape [N]=(30,)",
            "",
        ),
        (
            "label_shape",
            lambda p: _npz(p, x=X, y=np.ones((30, 2), np.int64)),
            {},
            "classification targets y must have shape [N]",
            "task.kind",
        ),
        (
            "per_step_shape",
            lambda p: _npz(p, x=X, y=np.ones((30, 4))),
            {"per_step": True},
            "per-step targets y must have shape [N, T=6",
            "",
        ),
        (
            "too_few_for_split",
            lambda p: _npz(p, x=X[:2], y=Y[:2]),
            {},
            "task.val_fraction: 0.2 of 2 sequences leaves 2 for training and 0 for validation",
            "",
        ),
        (
            "val_unknown_label",
            lambda p: _val_case(p, y_val=np.full(10, 7)),
            {},
            "task.val_path: file",
            "label 7 does not occur in the training data",
        ),
        (
            "val_feature_mismatch",
            lambda p: _val_case(p, x_val=np.zeros((10, 6, 2))),
            {},
            "has 2 features per step, the training data 3",
            "",
        ),
        (
            "csv_missing_column",
            lambda p: _csv(p, drop="step"),
            {},
            "has no column 'step' (columns: seq, f0, f1, f2, label)",
            "task.step_column=NAME",
        ),
        (
            "csv_text_feature",
            lambda p: _csv(p, set_col=("f1", "x")),
            {},
            "column 'f1' must hold numbers",
            "task.feature_columns",
        ),
        (
            "csv_nan",
            lambda p: _csv(p, nan_at=("f0", 7)),
            {},
            "column 'f0' is empty or NaN in data row 8",
            "",
        ),
        ("csv_repeated_step", lambda p: _csv(p, repeat=True), {}, "has step", "more than once"),
        (
            "csv_varying_label",
            lambda p: _csv(p, vary=True),
            {"per_step": False},
            "the label changes within a sequence, but task.per_step=false",
            "",
        ),
        ("csv_empty", lambda p: _write(p / "e.csv", b""), {}, "cannot read", "as CSV"),
        (
            "csv_header_only",
            lambda p: _write(p / "h.csv", b"seq,step,f0,label\n"),
            {},
            "has no rows",
            "",
        ),
    ]


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _npy_named_npz(p) -> str:
    np.save(p / "a.npy", X)
    (p / "a.npy").rename(p / "a.npz")
    return str(p / "a.npz")


def _val_case(p, x_val=None, y_val=None) -> str:
    _npz(p, "v.npz", x=X[:10] if x_val is None else x_val, y=Y[:10] if y_val is None else y_val)
    return _npz(p, x=X, y=Y)


def _csv(p, drop=None, set_col=None, nan_at=None, repeat=False, vary=False) -> str:
    df = to_long(X, Y, L).sort_values(["seq", "step"]).reset_index(drop=True)
    if drop:
        df = df.drop(columns=drop)
    if set_col:
        df[set_col[0]] = set_col[1]
    if nan_at:
        df.loc[nan_at[1], nan_at[0]] = np.nan
    if repeat:
        df.loc[1, "step"] = df.loc[0, "step"]
    if vary:
        df.loc[1, "label"] = (df.loc[0, "label"] + 1) % 3
    df.to_csv(p / "d.csv", index=False)
    return str(p / "d.csv")


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_data_raises_one_line_user_error(tmp_path, case):
    _, make_path, options, needle, needle2 = case
    path = make_path(tmp_path)
    cfg = FileTask(path=path, **options)
    if case[0].startswith("val_"):
        cfg = dataclasses.replace(cfg, val_path=str(tmp_path / "v.npz"))
    with pytest.raises(UserError) as info:
        build_file(cfg)
    message = str(info.value)
    assert "\n" not in message and needle in message and needle2 in message
    assert message.startswith(("task.path:", "task.val_path:", "task.val_fraction:"))
    assert "; " in message  # every message says how to fix it


@pytest.mark.slow
def test_cli_bad_file_exits_2_with_one_line_and_writes_nothing(tmp_path):
    from conftest import run_cli

    x = X.copy()
    x[0, 0, 0] = math.inf
    np.savez(tmp_path / "d.npz", x=x, y=Y)
    results = tmp_path / "results"
    proc = run_cli(
        "run", "task=file", f"task.path={tmp_path / 'd.npz'}", f"results_dir={results}", "workers=1"
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "task.path: file" in lines[0] and "NaN or inf" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (results / "lrsweep.db").exists()
