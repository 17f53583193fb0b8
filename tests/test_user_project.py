"""Users' own code through the real CLI: the examples in examples/, and a project folder outside
the repository driving a wheel-installed lrsweep, killed with -9 and resumed (issue 12)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, kill_process_tree, run_cli

pytestmark = pytest.mark.slow
EXAMPLES = ROOT / "examples"
VOLATILE = ["seconds", "trial"]  # wall time and trial numbers differ between runs by nature


def _run_example(name: str, tmp_path: Path, *args: str) -> Path:
    results = tmp_path / "results"
    p = run_cli(
        "run",
        "--config-dir",
        "conf",
        *args,
        f"results_dir={results}",
        "workers=1",
        cwd=EXAMPLES / name,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    (study,) = [d for d in results.iterdir() if d.is_dir()]
    return study


def test_example_seq2seq_explodes_without_clipping_and_clipping_prevents_it(tmp_path):
    study = _run_example(
        "seq2seq_repeat",
        tmp_path,
        "model=seq2seq",
        "task=reversal",
        "optimizer=sgd",
        "grid.lr=[1,3]",
        "grid.clip=[null,0.5]",
        "seeds=2",
        "epochs=6",
    )
    assert study.name == "load_reversal-RepeatSeq2Seq-sgd"
    runs = pd.read_csv(study / "runs.csv")
    blown = runs[(runs["lr"] == 3) & runs["clip"].isna()]
    assert (blown["collapse_mode"] == "nonfinite").all() and (blown["collapse_epoch"] == 1).all()
    assert (runs[runs["clip"] == 0.5]["collapse_mode"] != "nonfinite").all()  # clipped: finite
    assert runs[(runs["lr"] == 1) & runs["clip"].isna()]["outcome"].eq("stable").all()
    curves = pd.read_parquet(study / "curves.parquet")
    assert {"grad_norm_max/encoder", "grad_norm_max/decoder"} <= set(curves.columns)


def test_example_custom_loader_with_a_builtin_model(tmp_path):
    study = _run_example(
        "custom_loader",
        tmp_path,
        "task=waves",
        "model=gru",
        "model.hidden_size=16",
        "model.layers=1",
        "grid.lr=[0.03]",
        "grid.clip=[null]",
        "seeds=1",
        "epochs=3",
    )
    runs = pd.read_csv(study / "runs.csv")
    assert study.name == "load_waves-gru-sgd" and runs["outcome"].iloc[0] == "stable"


def test_example_two_parameter_groups_show_which_one_exploded(tmp_path):
    study = _run_example(
        "two_groups",
        tmp_path,
        "model=twopart",
        "task=digits",
        "grid.lr=[0.3]",
        "grid.clip=[null]",
        "seeds=2",
        "epochs=6",
    )
    runs = pd.read_csv(study / "runs.csv")
    # lr=0.3: this model collapses within a few epochs (in one seed or both, by the CPU's arithmetic)
    assert runs["collapsed"].any(), runs[["seed", "best_acc", "final_acc", "outcome"]]
    figures = list((study / "figures" / "layer_grad_norms").glob("*.png"))
    assert len(figures) == 1
    curves = pd.read_parquet(study / "curves.parquet")
    for group in ("encoder", "readout"):  # the model's two top-level modules, each a curve
        assert curves[f"grad_norm_max/{group}"].gt(0).all()
    assert "Gradient norms per layer" in (study / "report.html").read_text()


# --------------------------------------------------------------------------- a project outside the repository


MODEL = (EXAMPLES / "two_groups" / "mynets.py").read_text()
DATA = '''
"""Handwritten digits read row by row, through a loader of one's own."""

import numpy as np


def load_digit_rows():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return {"x": (digits.images / 16.0).astype(np.float32), "y": digits.target}
'''
SWEEP = [
    "--config-dir",
    "conf",
    "model=twopart",
    "task=rows",
    "optimizer=sgd",
    "grid.lr=[0.05,0.3]",
    "grid.clip=[null]",
    "seeds=2",
    "epochs=6",
    "workers=1",
    "checkpoint_every=1",
]


def _project(folder: Path) -> Path:
    (folder / "conf" / "model").mkdir(parents=True)
    (folder / "conf" / "task").mkdir(parents=True)
    (folder / "mynets.py").write_text(MODEL)
    (folder / "mydata.py").write_text(DATA)
    (folder / "conf" / "model" / "twopart.yaml").write_text(
        "_target_: mynets.TwoPart\nhidden: 32\ngain: 2.0\n"
    )
    (folder / "conf" / "task" / "rows.yaml").write_text(
        "_target_: mydata.load_digit_rows\nval_fraction: 0.25\nnormalize: false\n"
    )
    return folder


@pytest.mark.xdist_group("installed-lrsweep")  # one worker builds the wheel and its venv
def test_a_project_folder_drives_an_installed_lrsweep_and_survives_kill_9(
    tmp_path, installed_lrsweep
):
    sweep = installed_lrsweep / "sweep"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "PYTHONDONTWRITEBYTECODE": "1"
    }

    def run(folder: Path, *extra: str, **kwargs):
        return subprocess.run(
            [str(sweep), "run", *SWEEP, *extra],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            **kwargs,
        )

    straight = _project(tmp_path / "straight")
    p = run(straight)
    assert p.returncode == 0, p.stderr[-3000:]
    out = straight / "results" / "load_digit_rows-TwoPart-sgd"
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 and runs["collapsed"].any()
    assert list(runs.columns[:10]) == [
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
    page = (out / "report.html").read_text()
    assert "Gradient norms per layer" in page and "figures/layer_grad_norms/" in page
    assert "packing: off for the custom model mynets.TwoPart" in p.stdout

    killed = _project(tmp_path / "killed")
    proc = subprocess.Popen(
        [str(sweep), "run", *SWEEP],
        cwd=killed,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = killed / "results" / "load_digit_rows-TwoPart-sgd" / "checkpoints"
    deadline = time.monotonic() + 300
    while not any(checkpoints.glob("*.pt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    kill_process_tree(proc)
    assert not (killed / "results" / "load_digit_rows-TwoPart-sgd" / "runs.csv").exists()
    p = run(killed)  # the same command resumes
    assert p.returncode == 0, p.stderr[-3000:]
    resumed = pd.read_csv(killed / "results" / "load_digit_rows-TwoPart-sgd" / "runs.csv")
    pd.testing.assert_frame_equal(resumed.drop(columns=VOLATILE), runs.drop(columns=VOLATILE))
