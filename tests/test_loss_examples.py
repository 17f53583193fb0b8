"""The two Keras examples whose training has no meaningful accuracy (issue 27) run through the
real `sweep run trainer=command` at their documented commands, on fewer settings: their calls
come from the loss (the seq2seq autoencoder's training loss: no validation set; the regression's
validation loss, its Keras "accuracy" named as meaningless in one line), and a setting that
collapses is told apart from one that does not."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.integration("keras")]

EXAMPLES = ROOT / "examples"


def _sweep(folder: str, command: str, tmp_path: Path, *overrides: str) -> tuple[pd.DataFrame, str]:
    """`sweep run trainer=command` on an example script from its folder, as its README does
    (`python` being this interpreter); its runs.csv, and what it printed with its verdict.txt."""
    p = run_cli(
        "run",
        "trainer=command",
        f"trainer.command={sys.executable} {command}",
        *overrides,
        f"results_dir={tmp_path}",
        "workers=2",
        cwd=EXAMPLES / folder,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    study = tmp_path / "train-command"
    return pd.read_csv(study / "runs.csv"), p.stdout + (study / "verdict.txt").read_text()


def test_the_regressions_meaningless_accuracy_is_named_and_its_validation_loss_tells_lr_1_collapses(
    tmp_path,
):
    """examples/keras_regression at its README's command, lr 0.01 and 1, one seed: Keras's
    "accuracy" stays near 1/300 while the loss falls, which the study says in one line; the calls
    read the validation loss; lr 1 learns during the warmup and then loses it (3 of 3 seeds in the
    README's table; the loss returns to that of knowing nothing), lr 0.01 learns and keeps it."""
    runs, said = _sweep(
        "keras_regression",
        "train.py --lr {lr} --clipnorm {clip} --batch-size {batch_size} --seed {seed} "
        "--epochs {epochs} --warmup-epochs 3 --log {metrics}",
        tmp_path,
        "grid.lr=[0.01,1]",
        "grid.clip=[null]",
        "grid.batch_size=[32]",
        "seeds=1",
        "epochs=12",
    )
    assert len(runs) == 2 and (runs["metric"] == "val_loss").all(), runs[["lr", "metric"]]
    lines = [line for line in said.splitlines() if "accuracy column does not move" in line]
    assert lines and all("Calls from the validation loss" in line for line in lines), said
    assert "trainer.metric=acc forces it" in lines[0]
    by_lr = runs.set_index("lr")
    assert by_lr.loc[0.01, "outcome"] == "stable", by_lr.loc[0.01].to_dict()
    assert by_lr.loc[0.01, "best_loss"] < 0.6  # the letters tell half of each vector's variance
    collapsed = by_lr.loc[1.0]
    assert collapsed["outcome"] == "collapsed" and collapsed["collapse_mode"] == "diverged", (
        collapsed.to_dict()
    )
    assert collapsed["best_loss"] < 0.7 < 0.9 < collapsed["final_loss"]  # learned, then lost it
    logs = sorted(
        tmp_path.rglob("metrics.csv")
    )  # Keras's own CSV, with the loss of knowing nothing
    assert logs and logs[0].read_text().startswith(
        "epoch,accuracy,chance_loss,loss,val_accuracy,val_loss"
    )


def test_the_seq2seq_autoencoder_is_called_from_its_training_loss_and_collapses_at_lr_4_unclipped(
    tmp_path,
):
    """examples/keras_seq2seq at its README's command, lr 4 with and without clipping, seed 0,
    18 epochs: no validation set, so the calls read the training loss and say so; without
    clipping the run learns during the warmup and then loses it (the loss climbs past the
    letters' entropy, logged as chance_loss: 2 of 3 seeds in the README's table, seed 0 at epoch
    14, so the test trains 2 epochs more than the README's 16 to leave detect.patience after a
    collapse an epoch later on other arithmetic), with clipping at 0.25 it keeps learning."""
    runs, said = _sweep(
        "keras_seq2seq",
        "train.py --lr {lr} --clipnorm {clip} --batch-size {batch_size} --seed {seed} "
        "--epochs {epochs} --warmup-epochs 12 --log {metrics}",
        tmp_path,
        "grid.lr=[4]",
        "grid.clip=[null,0.25]",
        "grid.batch_size=[64]",
        "seeds=1",
        "epochs=18",
    )
    assert "Calls from the training loss: no validation set." in said
    assert len(runs) == 2 and (runs["metric"] == "train_loss").all(), runs[["clip", "metric"]]
    unclipped, clipped = runs[runs["clip"].isna()].iloc[0], runs[runs["clip"].notna()].iloc[0]
    assert unclipped["outcome"] == "collapsed", unclipped.to_dict()
    assert unclipped["collapse_chain"], unclipped.to_dict()  # the callback's signals were read
    assert clipped["outcome"] == "stable", clipped.to_dict()
    log = next(tmp_path.rglob("metrics.csv")).read_text().splitlines()
    assert log[0].startswith("epoch,chance_loss,")  # Keras adds NA val_ columns of its own
    chance_loss = float(log[1].split(",")[1])
    assert chance_loss == pytest.approx(2.0057, abs=1e-3)  # entropy of the letter frequencies
    assert clipped["best_loss"] < 0.8 * chance_loss < chance_loss < unclipped["final_loss"]
