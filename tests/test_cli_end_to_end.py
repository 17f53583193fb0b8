"""The real `sweep` CLI on tiny grids in a temporary folder."""

import pandas as pd
import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

RUN_COLUMNS = [
    "lr",
    "clip",
    "batch_size",
    "seed",
    "best_acc",
    "best_epoch",
    "final_acc",
    "collapsed",
    "collapse_epoch",
    "collapse_mode",
]
SUMMARY_COLUMNS = [
    "lr",
    "clip",
    "batch_size",
    "n_runs",
    "mean_best_acc",
    "mean_best_acc_lo",
    "mean_best_acc_hi",
    "collapse_rate",
    "collapse_rate_lo",
    "collapse_rate_hi",
]
CURVE_COLUMNS = [
    "lr",
    "clip",
    "batch_size",
    "seed",
    "epoch",
    "train_loss",
    "val_loss",
    "val_acc",
    "grad_norm_mean",
    "grad_norm_max",
    "grad_norm_p90",
    "clip_fraction",
    "pred_top_frac",
]


def test_run_writes_the_three_tables_and_report_rebuilds_them(tmp_path):
    results = tmp_path / "results"
    args = [
        "model=gru",
        "optimizer=sgd",
        "model.hidden_size=8",
        "model.layers=1",
        "grid.lr=[0.05,0.5]",
        "grid.clip=[null,0.5]",
        "grid.batch_size=[32,128]",
        "seeds=3",
        "epochs=2",
        "study.name=mine",
        f"results_dir={results}",
        "workers=2",
    ]
    p = run_cli("run", *args)
    assert p.returncode == 0, p.stderr
    out = results / "mine"
    assert str(out) in p.stdout  # says where the results are
    runs = pd.read_csv(out / "runs.csv")
    summary = pd.read_csv(out / "summary.csv")
    curves = pd.read_parquet(out / "curves.parquet")
    assert list(runs.columns[: len(RUN_COLUMNS)]) == RUN_COLUMNS
    assert list(summary.columns[: len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert set(CURVE_COLUMNS) <= set(curves.columns)
    # every (lr, clip, batch size) setting once in the summary, every seed once in runs
    assert len(summary) == 8 and (summary["n_runs"] == 3).all()
    assert (
        len(runs) == 24 and not runs.duplicated(subset=["lr", "clip", "batch_size", "seed"]).any()
    )
    assert (
        set(runs["clip"].dropna()) == {0.5} and runs["clip"].isna().sum() == 12
    )  # empty = no clipping
    assert set(runs["collapse_mode"].dropna()) <= {"nonfinite", "diverged", "constant_output"}
    assert (
        curves.groupby(["lr", "clip", "batch_size", "seed"], dropna=False)["epoch"].max() <= 2
    ).all()
    assert curves["epoch"].min() == 1

    # The storage alone rebuilds identical tables.
    for name in ("runs.csv", "summary.csv", "curves.parquet"):
        (out / name).unlink()
    p2 = run_cli("report", "study.name=mine", f"results_dir={results}")
    assert p2.returncode == 0, p2.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out / "runs.csv"), runs)
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv"), summary)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "curves.parquet"), curves)


def test_rerun_of_a_finished_sweep_trains_nothing_and_extends_with_new_values(tmp_path):
    results = tmp_path / "results"
    base = [
        "model.hidden_size=8",
        "model.layers=1",
        "epochs=1",
        "seeds=2",
        "grid.clip=[null]",
        "grid.batch_size=[128]",
        f"results_dir={results}",
        "study.name=ext",
        "workers=1",
    ]
    assert run_cli("run", *base, "grid.lr=[0.1]").returncode == 0
    p = run_cli("run", *base, "grid.lr=[0.1]")
    assert p.returncode == 0 and "1 done, 0 to run" in p.stdout
    p = run_cli("run", *base, "grid.lr=[0.1,0.3]", "seeds=3")
    assert p.returncode == 0, p.stderr
    assert "0 done, 2 to run" in p.stdout  # both settings miss seed 2
    runs = pd.read_csv(results / "ext" / "runs.csv")
    assert sorted(runs.groupby("lr").size().tolist()) == [3, 3]
    first = runs[(runs.lr == 0.1) & (runs.seed < 2)]
    assert first["trial"].max() == 0  # seeds 0-1 of lr 0.1 were not retrained


def test_cfg_job_prints_the_composed_config():
    p = run_cli("run", "--cfg", "job", "task=adding", "seeds=7")
    assert p.returncode == 0
    assert "name: adding" in p.stdout and "seeds: 7" in p.stdout and "grid:" in p.stdout


def test_help_lists_commands_and_groups():
    p = run_cli("--help")
    assert p.returncode == 0
    for word in (
        "run",
        "worker",
        "report",
        "status",
        "task:",
        "digits",
        "model:",
        "optimizer:",
        "grid",
    ):
        assert word in p.stdout


def test_status_lists_studies(tmp_path):
    results = tmp_path / "results"
    args = [
        "model.hidden_size=8",
        "model.layers=1",
        "epochs=1",
        "seeds=1",
        "grid.lr=[0.1]",
        "grid.clip=[null]",
        "grid.batch_size=[128]",
        f"results_dir={results}",
        "workers=1",
    ]
    assert run_cli("run", *args, "study.name=a").returncode == 0
    assert (
        run_cli("run", *args, "grid.lr=[0.1,0.2]", "study.name=b", "grid.clip=[null]").returncode
        == 0
    )
    p = run_cli("status", f"results_dir={results}")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == f"storage: sqlite:///{(results / 'lrsweep.db').resolve()}"
    header = lines[1].split()
    rows = {r.split()[0]: dict(zip(header, r.split())) for r in lines[2:4]}
    assert header[:7] == ["study", "settings", "done", "running", "failed", "remaining", "runs"]
    assert {
        k: (v["settings"], v["done"], v["running"], v["remaining"], v["runs"])
        for k, v in rows.items()
    } == {
        "a": ("1", "1", "0", "0", "1"),
        "b": ("2", "2", "0", "0", "2"),
    }


@pytest.mark.parametrize(
    "args,needle",
    [
        (["grid.lr=[-1]"], "grid.lr: every learning rate must be > 0"),
        (["task=nope"], "unknown task"),
        (["bogus"], "expected key=value"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_no_storage(tmp_path, args, needle):
    results = tmp_path / "results"
    p = run_cli("run", *args, f"results_dir={results}")
    assert p.returncode == 2
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (results / "lrsweep.db").exists()


def test_worker_with_only_storage_and_name_uses_the_studys_config(tmp_path):
    results = tmp_path / "results"
    args = [
        "model.hidden_size=8",
        "model.layers=1",
        "epochs=1",
        "seeds=1",
        "grid.lr=[0.1,0.2]",
        "grid.clip=[null]",
        "grid.batch_size=[128]",
        f"results_dir={results}",
        "study.name=w",
        "workers=1",
    ]
    assert run_cli("run", *args).returncode == 0
    # Defaults would be another model and grid (refused as incomparable); the stored config is used.
    p = run_cli("worker", "study.name=w", f"results_dir={results}")
    assert p.returncode == 0, p.stderr
    assert "2 settings x 1 seeds; 2 done, 0 to run" in p.stdout


def test_random_labels_on_20_validation_sequences_give_no_collapse_and_a_plain_warning(tmp_path):
    """Issue 10: labels independent of the inputs (nothing can be learned), 6 classes, 100
    sequences of which 20 validate. Noise alone used to produce a collapse rate rising with lr."""
    import html
    import re

    import numpy as np

    rng = np.random.default_rng(1)
    np.savez(
        tmp_path / "random.npz",
        x=rng.standard_normal((100, 20, 2)).astype(np.float32),
        y=rng.integers(0, 6, size=100),
    )
    results = tmp_path / "results"
    p = run_cli(
        "run",
        "task=file",
        f"task.path={tmp_path / 'random.npz'}",
        "optimizer=adam",
        "grid.lr=[0.001,0.01,0.1,0.3]",
        "grid.clip=[null]",
        "grid.batch_size=[32]",
        "seeds=8",
        "epochs=20",
        "model.layers=1",
        "model.hidden_size=32",
        f"results_dir={results}",
        "study.name=random-labels",
    )
    assert p.returncode == 0, p.stderr
    runs = pd.read_csv(results / "random-labels" / "runs.csv")
    assert len(runs) == 32 and not runs["collapsed"].any()
    assert (runs["outcome"] == "never_learned").all()
    assert runs["loss_jump_epoch"].isna().all()  # issue 14: no loss jump where nothing was learned
    page = html.unescape((results / "random-labels" / "report.html").read_text())
    reading = re.search(r'<p class="reading">(.*?)</p>', page, re.S).group(1)
    assert "With 20 validation sequences" in reading
    assert "too small to tell small changes apart" in reading
    assert "task.val_fraction=" in reading and "task.val_path" in reading
    assert "Recommended:" not in reading  # nothing learned: nothing to recommend
