"""Every bad input a user can plausibly give, through the real CLI (issue 6).

One table drives each case through the `sweep` CLI, each case its own process (forked from one
that has imported lrsweep already: tests/forked_cli.py; a few cases also go through
`python -m sweep` itself, to show both give the same), and checks what the user gets:
exit status 2, exactly one line on stderr that starts with `error: <key or file>` and says how
to fix it (a `;` clause), no traceback, no password; and what the mistake leaves behind:
the storage file byte-identical (or still absent) and nothing new under results_dir.

Placeholders in a case's arguments: `$DATA` is a folder of bad data files (module fixture),
`$EXISTING` the SQLite URL of a storage holding study `s1` (made once by a tiny sweep), `$RESULTS`
the case's own empty results folder.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, _forked_cli, run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("bad-inputs"),
]  # one worker builds the fixtures

# One tiny valid sweep: every case below breaks exactly one thing in it.
BASE = [
    "model.hidden_size=4",
    "model.layers=1",
    "epochs=1",
    "seeds=1",
    "grid.lr=[0.1]",
    "grid.clip=[null]",
    "grid.batch_size=[256]",
    "workers=1",
]
PASSWORD = "hunter2-secret"


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    key: str  # the message starts with this (the key or file at fault)
    needles: tuple[str, ...] = ()  # also in the message: the rule, the value, the fix
    command: str = "run"
    unless: str | None = None  # "root": skipped when running as root; "cuda": when CUDA is there
    base: bool = True  # start from the tiny base sweep (False: only results_dir and `args`)
    # The mistake shows only once a run has started (a script's log): progress lines may come
    # before the one error line, the storage is still left as it was (the study this command
    # created is deleted again), and the refused run's folder stays under <study>/runs/.
    started: bool = False


def case(
    id: str,
    args: str | tuple[str, ...],
    key: str,
    *needles: str,
    command: str = "run",
    unless: str | None = None,
    base: bool = True,
    started: bool = False,
) -> Case:
    return Case(
        id,
        (args,) if isinstance(args, str) else tuple(args),
        key,
        needles,
        command,
        unless,
        base,
        started,
    )


FILE = ("task=file", "grid.batch_size=[4]")
# A training script that writes a CSV log of 4 epochs (its header and each epoch's row).
LOG_SCRIPT = """import sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
with open(args["--log"], "w") as f:
    f.write("{header}\\n")
    for e in range(4):
        f.write(f"{row}\\n")
"""
LOG_SCRIPTS = (
    ("log_no_metric.py", "epoch,lr", "{e},0.1"),
    ("log_constant_loss.py", "epoch,loss", "{e},0.5"),
    ("log_loss_only.py", "epoch,loss,val_loss", "{e},{1 / (e + 1)},{1.1 / (e + 1)}"),
)
LOG_RUN = ("trainer=command", "grid.lr=[0.1]", "grid.clip=[null]", "epochs=4")
TRAIN = str(Path(__file__).parent / "data" / "fake_train.py")
START = str(Path(__file__).parent / "data" / "start")  # checkpoints to start sweeps from
COMMAND_TRAINER = ("trainer=command", "trainer.n_val=200", "trainer.chance=0.25")
FUNCTION_TRAINER = ("trainer=function", "trainer.n_val=200", "trainer.chance=0.25")
# A user's model ($DATA/conf/model/*.yaml): the base sweep's model.* keys do not apply to it.
CUSTOM = (
    "--config-dir",
    "$DATA/conf",
    "epochs=1",
    "seeds=1",
    "grid.lr=[0.1]",
    "grid.clip=[null]",
    "grid.batch_size=[256]",
    "workers=1",
)

CASES = [
    # --- learning rates, clip norms, batch sizes ------------------------------------------
    case("lr-negative", "grid.lr=[-0.1]", "grid.lr", "> 0", "-0.1", "e.g. grid.lr="),
    case("lr-zero", "grid.lr=[0]", "grid.lr", "> 0", "got 0.0"),
    case("lr-not-a-number", "grid.lr=[abc]", "grid.lr", "must be a number", "'abc'"),
    case("lr-not-a-number-no-brackets", "grid.lr=abc", "grid.lr", "must be a number", "'abc'"),
    case("lr-one-bad-in-list", "grid.lr=[0.1,abc]", "grid.lr", "must be a number", "'abc'"),
    case("lr-nan", "grid.lr=[nan]", "grid.lr", "finite", "nan"),
    case("lr-inf", "grid.lr=[inf]", "grid.lr", "finite", "inf"),
    case("lr-boolean", "grid.lr=[true]", "grid.lr", "must be a number", "True"),
    case(
        "lr-comma-list-without-brackets",
        "grid.lr=0.1,0.2",
        "grid.lr",
        "ambiguous",
        "grid.lr='[0.1,0.2]'",
    ),
    case("lr-mapping", "grid.lr={a:1}", "grid.lr", "cannot set", "--cfg job"),
    case("lr-repeated", "grid.lr=[0.1,0.1]", "grid.lr", "must not repeat"),
    case("lr-empty", "grid.lr=[]", "grid.lr", "at least one value", "e.g. grid.lr="),
    case(
        "clip-empty",
        "grid.clip=[]",
        "grid.clip",
        "at least one value",
        "e.g. grid.clip='[null,1.0]'",
    ),
    case(
        "batch-size-empty",
        "grid.batch_size=[]",
        "grid.batch_size",
        "at least one value",
        "e.g. grid.batch_size=",
    ),
    case("clip-zero", "grid.clip=[0]", "grid.clip", "> 0 or null", "got 0.0"),
    case("clip-negative", "grid.clip=[-1]", "grid.clip", "> 0 or null", "-1.0"),
    case("clip-not-a-number", "grid.clip=[abc]", "grid.clip", "must be a number", "'abc'"),
    case("batch-size-zero", "grid.batch_size=[0]", "grid.batch_size", ">= 1", "got 0"),
    case("batch-size-negative", "grid.batch_size=[-8]", "grid.batch_size", ">= 1", "-8"),
    case("batch-size-fraction", "grid.batch_size=[1.5]", "grid.batch_size", "integer", "1.5"),
    case(
        "batch-size-larger-than-training-set",
        "grid.batch_size=[100000]",
        "grid.batch_size",
        "training sequences",
        "100000",
        "smaller batch sizes",
    ),
    # --- seeds, epochs, workers, device ---------------------------------------------------
    case("seeds-zero", "seeds=0", "seeds", ">= 1", "got 0", "e.g. seeds=5"),
    case("seeds-not-a-number", "seeds=abc", "seeds", "integer", "'abc'"),
    case("seeds-huge", "seeds=1000000000", "seeds", "<= 10000"),
    case("epochs-zero", "epochs=0", "epochs", ">= 1", "got 0", "e.g. epochs="),
    case("epochs-negative", "epochs=-3", "epochs", ">= 1", "-3"),
    case("epochs-fraction", "epochs=1.5", "epochs", "integer", "1.5"),
    case(
        "workers-zero", "workers=0", "workers", ">= 1", "got 0", "e.g. workers=auto (the default)"
    ),
    case("workers-not-a-number", "workers=many", "workers", "auto", "'many'"),
    case("device-unknown", "device=tpu", "device", "auto, cpu, cuda", "'tpu'"),
    case("device-bad-index", "device=cuda:x", "device", "cuda:N", "'cuda:x'"),
    case(
        "device-index-with-leading-zero", "device=cuda:01", "device", "leading zeros", "'cuda:01'"
    ),
    case("device-cuda-without-gpu", "device=cuda", "device", "'cuda'", "device=cpu", unless="cuda"),
    case("packing-unknown", "packing=maybe", "packing", "auto, on or off", "'maybe'"),
    case("checkpoint-every-negative", "checkpoint_every=-1", "checkpoint_every", ">= 0", "-1"),
    # --- detection thresholds ---------------------------------------------------------------
    case("detect-drop-zero", "detect.drop=0", "detect.drop", "(0, 1)", "0.0", "detect.drop=0.5"),
    case("detect-drop-one", "detect.drop=1", "detect.drop", "(0, 1)", "1.0"),
    case("detect-min-gain-above-one", "detect.min_gain=1.5", "detect.min_gain", "(0, 1)", "1.5"),
    case("detect-min-gain-negative", "detect.min_gain=-0.1", "detect.min_gain", "(0, 1)", "-0.1"),
    case(
        "detect-constant-frac-zero",
        "detect.constant_frac=0",
        "detect.constant_frac",
        "(0, 1)",
        "0.0",
    ),
    case("detect-patience-zero", "detect.patience=0", "detect.patience", ">= 1", "got 0"),
    case("detect-spike-factor-one", "detect.spike_factor=1", "detect.spike_factor", "> 1", "1.0"),
    case(
        "detect-alpha-zero",
        "detect.alpha=0",
        "detect.alpha",
        "(0, 0.2]",
        "0.0",
        "detect.alpha=0.01",
    ),
    case("detect-alpha-too-large", "detect.alpha=0.5", "detect.alpha", "(0, 0.2]", "0.5"),
    case("detect-jump-z-zero", "detect.jump_z=0", "detect.jump_z", "> 0", "0.0"),
    case(
        "detect-jump-min-rise-one", "detect.jump_min_rise=1", "detect.jump_min_rise", "> 1", "1.0"
    ),
    # --- discriminative learning rates (issue 14) ---------------------------------------------
    case(
        "group-lr-mult-wrong-length",
        "optimizer.group_lr_mult=[0.1,0.3,1.0]",
        "optimizer.group_lr_mult",
        "3 multipliers",
        "2 parameter groups (rnn.l0, head)",
        "optimizer.group_lr_mult=[1.0,1.0]",
    ),
    case(
        "group-lr-mult-zero",
        "optimizer.group_lr_mult=[0,1]",
        "optimizer.group_lr_mult",
        "positive finite",
        "[0.0, 1.0]",
        "lr/9, lr/3, lr",
    ),
    case(
        "group-lr-mult-not-numbers",
        "optimizer.group_lr_mult=[a,b]",
        "optimizer.group_lr_mult",
        "must be a number",
        "got 'a'",
    ),
    case(
        "group-lr-mult-axis-flat",
        "+grid.optimizer.group_lr_mult=[0.1,1]",
        "grid.optimizer.group_lr_mult",
        "list of lists",
        "[[0.11,0.33,1.0],[1.0,1.0,1.0]]",
    ),
    case(
        "group-lr-mult-axis-wrong-length",
        "+grid.optimizer.group_lr_mult=[[1,1],[0.1,0.5,1]]",
        "optimizer.group_lr_mult",
        "3 multipliers",
        "2 parameter groups",
    ),
    # --- names: groups, keys, overrides, commands ---------------------------------------------
    case("unknown-task", "task=nope", "task=nope", "unknown task", "valid tasks: adding, digits"),
    case("unknown-model", "model=transformer", "model=transformer", "valid models: gru, lstm"),
    case(
        "unknown-optimizer",
        "optimizer=lbfgs",
        "optimizer=lbfgs",
        "valid optimizers: adam, adamw, rmsprop, sgd",
    ),
    case(
        "unknown-schedule",
        "schedule=linear",
        "schedule=linear",
        "valid schedules: constant, cosine, onecycle, step, warmup",
    ),
    case("two-models-at-once", "model=lstm,gru", "model=lstm,gru", "valid models"),
    case("unknown-key-typo", "epoch=3", "epoch", "unknown config key", "did you mean epochs?"),
    case(
        "unknown-nested-key-typo",
        "model.hiden_size=8",
        "model.hiden_size",
        "did you mean model.hidden_size?",
    ),
    case("unknown-key-forced", "++foo=1", "foo", "unknown config key"),
    case("plus-on-existing-key", "+seeds=3", "seeds", "already in the config", "seeds=VALUE"),
    case(
        "unknown-extra-grid-axis",
        "+grid.model.nonexistent=[1]",
        "grid.model.nonexistent",
        "not a config key that can be swept",
        "grid.model.hidden_size",
    ),
    case(
        "bad-value-on-extra-grid-axis", "+grid.model.hidden_size=[0,4]", "model.hidden_size", ">= 1"
    ),
    case("override-unclosed-bracket", "grid.lr=[0.1", "grid.lr", "cannot parse", "'grid.lr=[0.1'"),
    case("override-extra-bracket", "grid.lr=[0.1]]", "grid.lr", "cannot parse"),
    case("override-two-equals", "seeds=3=4", "seeds", "cannot parse"),
    case("override-without-value-sign", "seeds", "'seeds'", "expected key=value"),
    case("override-without-key", "=3", "'=3'", "no key"),
    case("interpolation-to-missing-key", "seeds=${epochz}", "seeds", "epochz", "existing key"),
    case("unknown-option", "--fast", "unknown option '--fast'", "--cfg job"),
    case("cfg-without-job", ("--cfg", "yaml"), "--cfg", "--cfg job"),
    case(
        "unknown-command",
        (),
        "unknown command 'frobnicate'",
        "run, worker, report, status",
        command="frobnicate",
    ),
    # --- study name, results_dir ---------------------------------------------------------------
    case("study-name-with-slash", "study.name=a/b", "study.name", "folder name", "'a/b'"),
    case("study-name-empty", "study.name=", "study.name", "must not be empty"),
    case("study-name-dot-dot", "study.name=..", "study.name", "folder name"),
    case(
        "study-name-unquoted-special-characters",
        "study.name=x<script>",
        "study.name",
        "cannot parse",
        "quote",
    ),
    case("results-dir-empty", "results_dir=", "results_dir", "must name a folder"),
    case(
        "results-dir-under-a-file",
        "results_dir=$DATA/ok.npz/results",
        "results_dir",
        "is a file",
        "results_dir=PATH",
    ),
    # --- task data -------------------------------------------------------------------------------
    case("file-task-without-path", FILE, "task.path", "must name a data file", "task.path=/data/"),
    case(
        "file-missing",
        (*FILE, "task.path=$DATA/missing.npz"),
        "task.path",
        "missing.npz",
        "does not exist",
    ),
    case(
        "file-unreadable",
        (*FILE, "task.path=$DATA/unreadable.npz"),
        "task.path",
        "unreadable.npz",
        "Permission denied",
        unless="root",
    ),
    case(
        "file-is-a-folder", (*FILE, "task.path=$DATA/folder"), "task.path", "folder", "not a file"
    ),
    case(
        "file-wrong-type-txt",
        (*FILE, "task.path=$DATA/data.txt"),
        "task.path",
        "'.txt'",
        ".npz, .csv or .parquet",
    ),
    case(
        "file-corrupt-npz",
        (*FILE, "task.path=$DATA/corrupt.npz"),
        "task.path",
        "corrupt.npz",
        "numpy.savez",
    ),
    case(
        "file-npy-not-npz", (*FILE, "task.path=$DATA/plain.npz"), "task.path", "single .npy array"
    ),
    case(
        "file-pickled-objects", (*FILE, "task.path=$DATA/pickled.npz"), "task.path", "pickled.npz"
    ),
    case(
        "file-x-wrong-shape",
        (*FILE, "task.path=$DATA/x_1d.npz"),
        "task.path",
        "x_1d.npz",
        "[N, T, F]",
        "(40,)",
    ),
    case(
        "file-y-wrong-length",
        (*FILE, "task.path=$DATA/y_short.npz"),
        "task.path",
        "y_short.npz",
        "one entry per sequence",
        "(30,)",
    ),
    case(
        "file-y-missing",
        (*FILE, "task.path=$DATA/no_y.npz"),
        "task.path",
        "no_y.npz",
        "no array 'y'",
    ),
    case(
        "file-x-strings", (*FILE, "task.path=$DATA/x_strings.npz"), "task.path", "must hold numbers"
    ),
    case("file-x-empty", (*FILE, "task.path=$DATA/x_empty.npz"), "task.path", "no empty axis"),
    case(
        "file-nan-inputs",
        (*FILE, "task.path=$DATA/nan.npz"),
        "task.path",
        "nan.npz",
        "NaN or inf",
        "sequence 3, step 2",
    ),
    case(
        "file-inf-inputs", (*FILE, "task.path=$DATA/inf.npz"), "task.path", "inf.npz", "NaN or inf"
    ),
    case(
        "file-nan-regression-targets",
        (*FILE, "task.path=$DATA/nan_targets.npz"),
        "task.path",
        "targets y hold NaN",
    ),
    case(
        "file-one-class",
        (*FILE, "task.path=$DATA/one_class.npz"),
        "task.path",
        "at least 2 classes",
        "found 1",
    ),
    case(
        "file-fractional-class-labels",
        (*FILE, "task.path=$DATA/half_labels.npz", "task.kind=classification"),
        "task.path",
        "class labels must be integers",
        "0.5",
    ),
    case(
        "file-validation-label-out-of-range",
        (*FILE, "task.path=$DATA/ok.npz", "task.val_path=$DATA/val_3_classes.npz"),
        "task.val_path",
        "label 2 does not occur in the training data",
    ),
    case(
        "file-validation-features-differ",
        (*FILE, "task.path=$DATA/ok.npz", "task.val_path=$DATA/val_5_features.npz"),
        "task.val_path",
        "5 features per step",
    ),
    case(
        "file-lengths-out-of-range",
        (*FILE, "task.path=$DATA/bad_lengths.npz"),
        "task.path",
        "lengths must be in 1..T",
    ),
    case(
        "file-csv-missing-column",
        (*FILE, "task.path=$DATA/no_seq.csv"),
        "task.path",
        "no column 'seq'",
        "task.seq_column",
    ),
    case(
        "file-corrupt-parquet",
        (*FILE, "task.path=$DATA/corrupt.parquet"),
        "task.path",
        "as Parquet",
    ),
    case(
        "file-kind-unknown",
        (*FILE, "task.path=$DATA/ok.npz", "task.kind=ordinal"),
        "task.kind",
        "'ordinal'",
    ),
    case(
        "file-validation-split-empty",
        (*FILE, "task.path=$DATA/ok.npz", "task.val_fraction=0.01"),
        "task.val_fraction",
        "0 for validation",
    ),
    case(
        "file-batch-larger-than-its-training-set",
        ("task=file", "task.path=$DATA/ok.npz"),
        "grid.batch_size",
        "the 32 training sequences",
        "[256]",
    ),
    case(
        "text-folder-empty",
        ("task=text", "task.path=$DATA/text_empty"),
        "task.path",
        "is empty",
        "train/pos",
    ),
    case(
        "text-folder-incomplete",
        ("task=text", "task.path=$DATA/text_train_only"),
        "task.path",
        "no test/neg",
    ),
    case(
        "text-folder-missing",
        ("task=text", "task.path=$DATA/nowhere"),
        "task.path",
        "does not exist",
    ),
    case(
        "text-path-is-a-file",
        ("task=text", "task.path=$DATA/ok.npz"),
        "task.path",
        "is a file, not a folder",
    ),
    # --- users' own code and config folders ($DATA/usercode.py, $DATA/conf; $DATA is on PYTHONPATH) ----
    case(
        "config-dir-missing",
        ("--config-dir", "$DATA/nowhere"),
        "--config-dir",
        "does not exist",
        "conf",
    ),
    case(
        "config-dir-unknown-option",
        ("--config-dir", "$DATA/conf", "model=nope"),
        "model=nope",
        "valid models",
        "wrong_shape",
    ),
    case(
        "model-target-not-importable",
        (*CUSTOM, "model=missing"),
        "model._target_",
        "cannot import 'nomodule_xyz.Net'",
        "PYTHONPATH",
        base=False,
    ),
    case(
        "model-target-not-a-module",
        (*CUSTOM, "model=not_module"),
        "model._target_",
        "not a torch.nn.Module",
        base=False,
    ),
    case(
        "model-target-bad-keyword",
        (*CUSTOM, "model=wrong_shape", "+model.colour=1"),
        "model._target_",
        "colour",
        "keyword arguments",
        base=False,
    ),
    case(
        "model-outputs-wrong-shape",
        (*CUSTOM, "model=wrong_shape"),
        "model:",
        "returned [2, 13]",
        "needs [2, 10]",
        base=False,
    ),
    case(
        "loader-returns-wrong-shapes",
        ("--config-dir", "$DATA/conf", "task=bad_loader"),
        "task._target_",
        "loader usercode.bad_loader",
        "must have shape [N, T, F]",
    ),
    case(
        "loader-returns-no-mapping",
        ("--config-dir", "$DATA/conf", "task=list_loader"),
        "task._target_",
        "not a mapping",
    ),
    # --- storage --------------------------------------------------------------------------------
    case(
        "storage-unreachable",
        f"study.storage=postgresql://u:{PASSWORD}@127.0.0.1:1/db",
        "study.storage",
        "cannot open",
        "postgresql://u:***@127.0.0.1:1/db",
        "check the URL",
    ),
    case(
        "storage-not-a-url",
        "study.storage=notaurl",
        "study.storage",
        "not a database URL",
        "sqlite:///",
    ),
    case(
        "storage-unknown-dialect",
        "study.storage=mysql+nodriver://x",
        "study.storage",
        "unknown database type",
    ),
    case(
        "storage-driver-missing",
        f"study.storage=mysql://u:{PASSWORD}@127.0.0.1:1/db",
        "study.storage",
        "not installed",
        "MySQLdb",
    ),
    case(
        "storage-port-not-a-number",
        f"study.storage=postgresql://u:{PASSWORD}@h:port/db",
        "study.storage",
        "not a valid database URL",
    ),
    case(
        "storage-unparsable-password",
        f"study.storage=postgresql://u:{PASSWORD}@[h/db",
        "study.storage",
        "cannot parse",
    ),
    case("storage-sqlite-no-file", "study.storage=sqlite:///", "study.storage", "names no file"),
    case(
        "storage-sqlite-folder-missing",
        "study.storage=sqlite:///$DATA/nowhere/x.db",
        "study.storage",
        "does not exist",
    ),
    case(
        "storage-sqlite-is-a-folder",
        "study.storage=sqlite:///$DATA/folder",
        "study.storage",
        "is a folder",
    ),
    case(
        "storage-sqlite-corrupt",
        "study.storage=sqlite:///$DATA/corrupt.db",
        "study.storage",
        "corrupt.db",
        "not a readable SQLite database",
    ),
    case(
        "storage-sqlite-not-optuna",
        "study.storage=sqlite:///$DATA/other.db",
        "study.storage",
        "other.db",
        "not an Optuna/lrsweep storage",
    ),
    # --- a study that exists -----------------------------------------------------------------------
    case(
        "incomparable-model",
        ("study.storage=$EXISTING", "study.name=s1", "model=gru"),
        "model.name",
        "study 's1' was run with model.name='lstm'",
        "study.name=s1-2",
    ),
    case(
        "incomparable-epochs",
        ("study.storage=$EXISTING", "study.name=s1", "epochs=2"),
        "epochs",
        "epochs=1",
        "not be comparable",
    ),
    case(
        "incomparable-hidden-size",
        ("study.storage=$EXISTING", "study.name=s1", "model.hidden_size=8"),
        "model.hidden_size",
        "model.hidden_size=4",
    ),
    case(
        "incomparable-optimizer",
        ("study.storage=$EXISTING", "study.name=s1", "optimizer=adam"),
        "optimizer.name",
        "'sgd'",
    ),
    case(
        "report-unknown-study",
        ("study.storage=$EXISTING", "study.name=nope"),
        "study.name",
        "no study 'nope'",
        "studies there: s1",
        command="report",
    ),
    case(
        "report-bad-threshold",
        ("study.storage=$EXISTING", "study.name=s1", "detect.drop=2"),
        "detect.drop",
        "(0, 1)",
        command="report",
    ),
    case(
        "report-results-dir-under-a-file",
        ("study.storage=$EXISTING", "study.name=s1", "results_dir=$DATA/ok.npz/results"),
        "results_dir",
        "is a file",
        command="report",
    ),
    case(
        "report-storage-missing",
        "study.storage=sqlite:///$DATA/missing.db",
        "study.storage",
        "does not exist",
        "sweep run",
        command="report",
    ),
    case(
        "report-storage-corrupt",
        "study.storage=sqlite:///$DATA/corrupt.db",
        "study.storage",
        "not a readable SQLite database",
        command="report",
    ),
    case(
        "status-storage-missing",
        "study.storage=sqlite:///$DATA/missing.db",
        "study.storage",
        "does not exist",
        command="status",
    ),
    case(
        "status-default-storage-missing",
        (),
        "study.storage",
        "lrsweep.db",
        "does not exist",
        command="status",
    ),
    case(
        "status-storage-not-optuna",
        "study.storage=sqlite:///$DATA/other.db",
        "study.storage",
        "not an Optuna/lrsweep storage",
        command="status",
    ),
    case(
        "status-storage-unreachable",
        f"study.storage=postgresql://u:{PASSWORD}@127.0.0.1:1/db",
        "study.storage",
        "cannot open",
        command="status",
    ),
    case(
        "worker-mistyped-study",
        ("study.storage=$EXISTING", "study.name=s2"),
        "study.name",
        "no study 's2'",
        "studies there: s1",
        command="worker",
        base=False,
    ),
    case(
        "worker-storage-missing",
        ("study.storage=sqlite:///$DATA/missing.db", "study.name=s1"),
        "study.storage",
        "does not exist",
        command="worker",
        base=False,
    ),
    case(
        "worker-zero-workers",
        ("study.storage=$EXISTING", "study.name=s1", "workers=0"),
        "workers",
        ">= 1",
        command="worker",
    ),
    # --- the range test: grid.lr=auto and sweep find check everything before they write ---------------
    case(
        "lr-auto-batch-larger-than-training-set",
        ("grid.lr=auto", "grid.batch_size=[100000]"),
        "grid.batch_size",
        "training sequences",
        "100000",
    ),
    case(
        "find-batch-larger-than-training-set",
        "grid.batch_size=[100000]",
        "grid.batch_size",
        "training sequences",
        command="find",
    ),
    case("find-too-few-steps", "find.steps=3", "find.steps", ">= 20", command="find"),
    # --- the signals of why a run collapsed (issue 26) ------------------------------------
    case(
        "signals-probe-size-negative",
        "signals.probe_size=-1",
        "signals.probe_size",
        "0 (off)",
        "-1",
    ),
    case(
        "signals-probe-size-not-a-number", "signals.probe_size=abc", "signals.probe_size", "integer"
    ),
    case("signals-every-zero", "signals.every=0", "signals.every", ">= 1", "signals.every=1"),
    case(
        "find-lr-range-upside-down",
        ("find.lr_min=1", "find.lr_max=0.1"),
        "find.lr_min",
        "below find.lr_max",
        command="find",
    ),
    case(
        "find-storage-corrupt",
        "study.storage=sqlite:///$DATA/corrupt.db",
        "study.storage",
        "not a readable SQLite database",
        command="find",
    ),
    case(
        "find-with-a-command-trainer",
        (*COMMAND_TRAINER, f"trainer.command=python {TRAIN} --lr {{lr}}"),
        "sweep find",
        "lrsweep's own model",
        command="find",
    ),
    # --- your own training: a command or a function (issue 18) ------------------------------------------
    case(
        "trainer-command-missing",
        COMMAND_TRAINER,
        "trainer.command",
        "must be the command line",
        "e.g. trainer.command=",
    ),
    case(
        "trainer-n-val-missing",
        (
            "trainer=command",
            f"trainer.command=python {TRAIN}",
            "trainer.chance=0.25",
            "trainer.metric=acc",
        ),
        "trainer.n_val",
        "sampling noise",
        "trainer.n_val=N",
    ),
    case(
        "trainer-chance-missing",
        (
            "trainer=command",
            f"trainer.command=python {TRAIN}",
            "trainer.n_val=40",
            "trainer.metric=acc",
        ),
        "trainer.chance",
        "guessing",
        "trainer.chance=log",
    ),
    case(
        "trainer-chance-above-one",
        (
            "trainer=command",
            f"trainer.command=python {TRAIN}",
            "trainer.n_val=40",
            "trainer.chance=1.5",
        ),
        "trainer.chance",
        "[0, 1)",
        "1.5",
    ),
    case(
        "trainer-n-val-not-a-number",
        (
            "trainer=command",
            f"trainer.command=python {TRAIN}",
            "trainer.n_val=many",
            "trainer.chance=0.1",
        ),
        "trainer.n_val",
        "whole number",
        "'many'",
    ),
    case(
        "trainer-timeout-negative",
        (*COMMAND_TRAINER, f"trainer.command=python {TRAIN}", "trainer.timeout_minutes=-1"),
        "trainer.timeout_minutes",
        ">= 0",
    ),
    case(
        "trainer-unknown-placeholder",
        (*COMMAND_TRAINER, f"trainer.command=python {TRAIN} --lr {{lrr}}"),
        "trainer.command",
        "unknown placeholder {lrr}",
        "{lr}, {clip}, {batch_size}",
    ),
    case(
        "trainer-cannot-start",
        (*COMMAND_TRAINER, "trainer.command=pyhton train.py --lr {lr}"),
        "trainer.command",
        "cannot start 'pyhton'",
        "PATH",
    ),
    case(
        "trainer-script-missing",
        (*COMMAND_TRAINER, "trainer.command=python $DATA/nowhere.py --lr {lr}"),
        "trainer.command",
        "nowhere.py does not exist",
    ),
    case(
        "trainer-unclosed-quote",
        (*COMMAND_TRAINER, "trainer.command=python 'train.py --lr {lr}"),
        "trainer.command",
        "cannot read the command line",
    ),
    case(
        "trainer-lr-auto",
        (*COMMAND_TRAINER, f"trainer.command=python {TRAIN} --lr {{lr}}", "grid.lr=auto"),
        "grid.lr=auto",
        "lrsweep's own model",
    ),
    case(
        "trainer-incomparable-with-a-builtin-study",
        (
            "study.storage=$EXISTING",
            "study.name=s1",
            *COMMAND_TRAINER,
            f"trainer.command=python {TRAIN} --lr {{lr}}",
        ),
        "trainer",
        "trained with trainer=builtin",
        "study.name=s1-2",
    ),
    # --- logs without a meaningful accuracy (issue 27): told once the first run has logged
    case(
        "log-neither-accuracy-nor-loss",
        (*LOG_RUN, "trainer.command=python $DATA/log_no_metric.py --log {metrics}"),
        "metrics file",
        "has neither an accuracy nor a loss column",
        "trainer.columns.train_loss=COLUMN",
        started=True,
    ),
    case(
        "log-constant-loss",
        (*LOG_RUN, "trainer.command=python $DATA/log_constant_loss.py --log {metrics}"),
        "metrics file",
        "column loss holds 0.5 in every epoch",
        "optimiser minimises",
        started=True,
    ),
    case(
        "log-metric-acc-without-accuracy",
        (
            *LOG_RUN,
            "trainer.command=python $DATA/log_loss_only.py --log {metrics}",
            "trainer.metric=acc",
            "trainer.n_val=40",
            "trainer.chance=0.25",
        ),
        "metrics file",
        "no validation accuracy column",
        "trainer.metric=auto",
        started=True,
    ),
    case(
        "trainer-function-missing-target",
        ("trainer=function", "trainer.n_val=10", "trainer.chance=0.1"),
        "trainer._target_",
        "needs a value",
        "trainer._target_=mytrain.fit",
    ),
    case(
        "trainer-function-not-importable",
        (*FUNCTION_TRAINER, "trainer._target_=nomodule_xyz.fit"),
        "trainer._target_",
        "cannot import 'nomodule_xyz.fit'",
        "PYTHONPATH",
    ),
    case(
        "trainer-function-not-a-function",
        (*FUNCTION_TRAINER, "trainer._target_=usercode.NOT_A_FUNCTION"),
        "trainer._target_",
        "not a function",
    ),
    case(
        "trainer-function-wrong-signature",
        (*FUNCTION_TRAINER, "trainer._target_=usercode.fit_without_report"),
        "trainer._target_",
        "wrong signature",
        "takes no report parameter",
        "def fit(setting, seed",
    ),
    case(
        "trainer-function-module-fails-at-import",
        (*FUNCTION_TRAINER, "trainer._target_=tests.data.broken_at_import.fit"),
        "trainer._target_",
        "importing tests.data.broken_at_import raised NameError",
        "undefined_width",
        "broken_at_import.py, line 9",
    ),
    case(
        "trainer-function-unknown-keyword",
        (*FUNCTION_TRAINER, "trainer._target_=usercode.fit_ok", "+trainer.colour=1"),
        "trainer._target_",
        "passes colour",
    ),
    # --- starting from a checkpoint (issue 28; files: tests/data/start/make_checkpoints.py) ----
    case(
        "start-checkpoint-missing",
        ("start.checkpoint=/nonexistent/epoch-900.pt", "start.epoch=900"),
        "start.checkpoint",
        "no such file",
        "e.g. start.checkpoint=",
    ),
    case(
        "start-checkpoint-shapes-do-not-fit",
        (f"start.checkpoint={START}/digits-lstm4-sgd.pt", "start.epoch=1", "model.hidden_size=6"),
        "start.checkpoint",
        "does not fit the model",
        "rnn.weight_ih_l0 is [16, 8] in the checkpoint but [24, 8]",
        "model.hidden_size=4",
    ),
    case(
        "start-checkpoint-other-optimizer",
        (f"start.checkpoint={START}/digits-lstm4-adam.pt", "start.epoch=1"),
        "start.checkpoint",
        "Adam's",
        "optimizer=sgd",
        "start.optimizer=fresh",
    ),
    case(
        "start-checkpoint-not-a-checkpoint",
        (f"start.checkpoint={START}/make_checkpoints.py", "start.epoch=1"),
        "start.checkpoint",
        "cannot be read as a PyTorch checkpoint",
        "torch.save(model.state_dict(), PATH)",
    ),
    case(
        "start-checkpoint-without-epoch",
        (f"start.checkpoint={START}/digits-lstm4-weights.pt",),
        "start.epoch",
        "after which epoch",
    ),
    case(
        "start-from-run-names-no-kept-state",
        "start.from_run=lr0.1-clipnone-bs256/seed-0@1",
        "start.from_run",
        "no kept state",
        "checkpoint.keep_epochs",
    ),
    case(
        "start-from-run-malformed",
        "start.from_run=lr0.1",
        "start.from_run",
        "seed-<N>@<EPOCH>",
    ),
    case(
        "start-original-setting-not-in-grid",
        (
            f"start.checkpoint={START}/digits-lstm4-sgd.pt",
            "start.epoch=1",
            "start.setting={lr:0.01,clip:null}",
        ),
        "start.setting",
        "not in the grid",
        "grid.lr='[0.1,0.01]'",
    ),
    case(
        "start-optimizer-unknown",
        "start.optimizer=reset",
        "start.optimizer",
        "restore or fresh",
    ),
    case(
        "start-from-scratch-study-is-incomparable",
        (
            "study.storage=$EXISTING",
            "study.name=s1",
            f"start.checkpoint={START}/digits-lstm4-sgd.pt",
            "start.epoch=1",
        ),
        "start.checkpoint",
        "trained every run from scratch",
        "study.name=s1-2",
    ),
    case(
        "keep-epochs-outside-the-sweep",
        "checkpoint.keep_epochs=[5]",
        "checkpoint.keep_epochs",
        "1 to 1",
    ),
    case(
        "start-log-missing",
        (
            f"start.checkpoint={START}/digits-lstm4-sgd.pt",
            "start.epoch=1",
            "start.log=/nonexistent/log.csv",
        ),
        "start.log",
        "is not a file",
    ),
    case(
        "start-command-init-checkpoint-without-a-checkpoint",
        (
            *COMMAND_TRAINER,
            f"trainer.command=python {TRAIN} --lr {{lr}} --init {{init_checkpoint}}",
        ),
        "trainer.command",
        "uses {init_checkpoint}, but no start.checkpoint is given",
        "start.checkpoint=PATH",
    ),
    case(
        "start-command-ignores-the-checkpoint",
        (
            *COMMAND_TRAINER,
            f"trainer.command=python {TRAIN} --lr {{lr}}",
            f"start.checkpoint={START}/digits-lstm4-weights.pt",
            "start.epoch=5",
        ),
        "trainer.command",
        "never passes {init_checkpoint}",
        "--initial-epoch {start_epoch}",
    ),
    case(
        "start-command-checkpoint-without-epoch",
        (
            *COMMAND_TRAINER,
            f"trainer.command=python {TRAIN} --lr {{lr}} --init {{init_checkpoint}}",
            f"start.checkpoint={START}/digits-lstm4-weights.pt",
        ),
        "start.epoch",
        "after which epoch",
    ),
    case(
        "start-function-without-init-checkpoint",
        (
            *FUNCTION_TRAINER,
            "trainer._target_=usercode.fit_ok",
            f"start.checkpoint={START}/digits-lstm4-weights.pt",
            "start.epoch=5",
        ),
        "trainer._target_",
        "takes no init_checkpoint parameter",
        "init_checkpoint=None",
    ),
    case(
        "start-from-run-with-a-users-training",
        (
            *COMMAND_TRAINER,
            f"trainer.command=python {TRAIN} --lr {{lr}} --init {{init_checkpoint}}",
            "start.from_run=lr0.1-clipnone-bs256/seed-0@1",
        ),
        "start.from_run",
        "start.checkpoint=PATH",
    ),
]


# --------------------------------------------------------------------------- fixtures


def _npz(path: Path, **arrays) -> None:
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A folder of bad (and a few good) data files and storages."""
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 10, 3)).astype("float32")
    y = np.arange(40) % 2
    _npz(d / "ok.npz", x=x, y=y)
    _npz(d / "unreadable.npz", x=x, y=y)
    os.chmod(d / "unreadable.npz", 0)
    _npz(d / "x_1d.npz", x=x[:, 0, 0], y=y)
    _npz(d / "y_short.npz", x=x, y=y[:30])
    _npz(d / "no_y.npz", x=x)
    _npz(d / "x_strings.npz", x=np.full((40, 10), "a"), y=y)
    _npz(d / "x_empty.npz", x=np.zeros((0, 10, 3), "float32"), y=np.zeros(0, int))
    bad = x.copy()
    bad[3, 2, 1] = np.nan
    _npz(d / "nan.npz", x=bad, y=y)
    bad[3, 2, 1] = np.inf
    _npz(d / "inf.npz", x=bad, y=y)
    targets = rng.normal(size=(40, 2))
    targets[5, 1] = np.nan
    _npz(d / "nan_targets.npz", x=x, y=targets)
    _npz(d / "one_class.npz", x=x, y=np.zeros(40, int))
    _npz(d / "half_labels.npz", x=x, y=y + 0.5)
    _npz(d / "val_3_classes.npz", x=x[:9], y=np.arange(9) % 3)
    _npz(d / "val_5_features.npz", x=rng.normal(size=(9, 10, 5)), y=np.arange(9) % 2)
    _npz(d / "bad_lengths.npz", x=x, y=y, lengths=np.full(40, 11))
    _npz(d / "pickled.npz", x=np.array([{"a": 1}] * 40, dtype=object), y=y)
    np.save(d / "plain.npy", x)
    (d / "plain.npy").rename(d / "plain.npz")
    (d / "corrupt.npz").write_bytes(rng.bytes(512))
    (d / "corrupt.parquet").write_bytes(rng.bytes(512))
    (d / "corrupt.db").write_bytes(rng.bytes(8192))
    (d / "data.txt").write_text("1 2 3\n")
    (d / "no_seq.csv").write_text("id,step,f,label\na,0,0.5,1\n")
    (d / "folder").mkdir()
    (d / "text_empty").mkdir()
    (d / "text_train_only" / "train" / "pos").mkdir(parents=True)
    (d / "text_train_only" / "train" / "neg").mkdir(parents=True)
    for label in ("pos", "neg"):
        (d / "text_train_only" / "train" / label / "1.txt").write_text("a fine film")
    (d / "usercode.py").write_text(USERCODE)
    for name, header, row in LOG_SCRIPTS:  # training scripts whose logs break a rule
        (d / name).write_text(LOG_SCRIPT.format(header=header, row=row))
    for group, option, target in (
        ("model", "wrong_shape", "usercode.WrongShape"),
        ("model", "missing", "nomodule_xyz.Net"),
        ("model", "not_module", "usercode.not_a_module"),
        ("task", "bad_loader", "usercode.bad_loader"),
        ("task", "list_loader", "usercode.list_loader"),
    ):
        (d / "conf" / group).mkdir(parents=True, exist_ok=True)
        (d / "conf" / group / f"{option}.yaml").write_text(f"_target_: {target}\n")
    con = sqlite3.connect(d / "other.db")
    con.execute("CREATE TABLE notes (text TEXT)")
    con.commit()
    con.close()
    return d


USERCODE = """
import numpy as np
from torch import nn


class WrongShape(nn.Module):
    def __init__(self, input_size, output_size):
        super().__init__()
        self.lin = nn.Linear(input_size, output_size + 3)

    def forward(self, inputs, lengths=None):
        return self.lin(inputs[:, -1])


def not_a_module(**kwargs):
    return {"a": 1}


def bad_loader():
    return {"x": np.zeros(10), "y": np.zeros(10)}


def list_loader():
    return [1, 2, 3]


NOT_A_FUNCTION = 3


def fit_without_report(setting, seed):
    pass


def fit_ok(setting, seed, report):
    pass
"""


@pytest.fixture(scope="module")
def cli():
    """The test process's ForkedCli server (conftest.run_cli's): one server's start-up (imports
    and warm-up, about 6 s of CPU) per xdist worker, not one more for this module."""
    return _forked_cli()


@pytest.fixture(scope="module")
def existing(tmp_path_factory) -> Path:
    """A storage holding study `s1`, trained once by the base sweep (the cases that need a
    study that exists share it and must leave it byte-identical)."""
    results = tmp_path_factory.mktemp("existing") / "results"
    p = run_cli("run", *BASE, "study.name=s1", f"results_dir={results}")
    assert p.returncode == 0, p.stderr
    return results / "lrsweep.db"


def _expand(arg: str, data: Path, existing: Path, results: Path) -> str:
    return (
        arg.replace("$DATA", str(data))
        .replace("$EXISTING", f"sqlite:///{existing}")
        .replace("$RESULTS", str(results))
    )


def _storage_file(args: list[str], results: Path) -> Path | None:
    """The SQLite file the command would use (the last override wins, as in Hydra)."""
    storage = results_dir = None
    for a in args:
        if a.startswith("study.storage="):
            storage = a.split("=", 1)[1]
        if a.startswith("results_dir="):
            results_dir = a.split("=", 1)[1]
    if not storage:
        return Path(results_dir or results) / "lrsweep.db"
    if storage.startswith("sqlite:///") and len(storage) > len("sqlite:///"):
        return Path(storage[len("sqlite:///") :])
    return None  # a server URL, or none at all


def _snapshot(path: Path | None) -> bytes | None:
    if path is None or not path.is_file():
        return None
    return path.read_bytes()


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.is_dir() else []


# --------------------------------------------------------------------------- the table


def test_the_table_has_over_a_hundred_distinct_cases():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 100


# Through `python -m sweep` itself too (about 8 s of CPU each): a config error, a storage error,
# users' code imported by a fresh interpreter.
REAL_PROCESS = (
    "lr-negative",
    "storage-sqlite-corrupt",
    "model-outputs-wrong-shape",
)


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_line_and_changes_nothing(
    bad: Case, data, existing, tmp_path, cli
):
    check_bad_input(bad, data, existing, tmp_path, cli.run)


@pytest.mark.parametrize("bad", [c for c in CASES if c.id in REAL_PROCESS], ids=lambda c: c.id)
def test_bad_input_through_python_m_sweep_gets_the_same(bad: Case, data, existing, tmp_path):
    check_bad_input(
        bad,
        data,
        existing,
        tmp_path,
        lambda argv, cwd, env: run_cli(*argv, cwd=cwd, timeout=120, env=env, real=True),
    )


def test_the_real_process_cases_are_in_the_table():
    assert set(REAL_PROCESS) <= {c.id for c in CASES}


def check_bad_input(bad: Case, data: Path, existing: Path, tmp_path: Path, run) -> None:
    if bad.unless == "root" and os.access(data / "unreadable.npz", os.R_OK):
        pytest.skip("running as root: chmod 000 does not stop reads (file-is-a-folder covers it)")
    if bad.unless == "cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    results = tmp_path / "results"
    results.mkdir()
    args = [
        f"results_dir={results}",
        *(BASE if bad.base else []),
        *(_expand(a, data, existing, results) for a in bad.args),
    ]
    storage = _storage_file(args, results)
    storage_before = _snapshot(storage)
    neighbours_before = _listing(storage.parent) if storage is not None else []
    data_before = _listing(data)

    # $DATA on PYTHONPATH: the users' code cases import usercode.py from there (no bytecode
    # written: the folder must stay as it was).
    p = run(
        [bad.command, *args],
        cwd=ROOT,
        env={"PYTHONPATH": str(data), "PYTHONDONTWRITEBYTECODE": "1"},
    )

    lines = p.stderr.splitlines()
    if bad.started:  # the progress of the run that showed the mistake
        lines = [ln for ln in lines if not (ln.startswith("[") and "settings done" in ln)]
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert len(lines) == 1, p.stderr
    line = lines[0]
    assert "Traceback" not in p.stderr
    assert line.startswith(f"error: {bad.key}"), line
    for needle in bad.needles:
        assert needle in line, (needle, line)
    assert "; " in line, f"no fix in: {line}"  # rule and value, then how to fix it
    assert PASSWORD not in p.stderr + p.stdout
    assert _snapshot(storage) == storage_before  # byte-identical, or still absent
    left = _listing(results)
    kept: set[str] = set()
    if bad.started:  # only the refused run's own folder (<study>/runs/...), with its log
        assert any(f.split("/")[1:2] == ["runs"] and f.endswith("stderr.log") for f in left), left
        top = {f.split("/")[0] for f in left if f.split("/")[1:2] == ["runs"]}
        kept = {f for f in left if f in top or (f.split("/")[0] in top and "/runs" in f)}
        left = [f for f in left if f not in kept]
    if storage is not None:  # no journal or WAL files left
        neighbours = _listing(storage.parent)
        if storage.parent == results:
            neighbours = [f for f in neighbours if f not in kept]
        assert neighbours == neighbours_before
    assert left == []  # nothing new under results_dir
    assert _listing(data) == data_before


def test_a_chmod_000_file_is_refused_when_reads_are_denied(data, tmp_path):
    """The unreadable-file case as the user sees it, also when the suite runs as root: a
    permission error from the reader becomes one line naming the file."""
    import sweep.tasks.files as files
    from sweep.config import FileTask
    from sweep.core.errors import UserError

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    copy = tmp_path / "copy.npz"
    shutil.copy(data / "ok.npz", copy)
    mp = pytest.MonkeyPatch()
    mp.setattr(files.np, "load", denied)
    try:
        with pytest.raises(
            UserError, match=r"task.path: cannot read .*copy.npz \(Permission denied\); check"
        ):
            files.read_file(str(copy), FileTask(path=str(copy)), "task.path")
    finally:
        mp.undo()


def test_device_cuda_gives_every_worker_an_explicit_gpu_index(monkeypatch):
    """torch.cuda.set_device refuses a bare torch.device("cuda"): `device=cuda` used to crash
    every worker on a GPU machine. Workers go round robin over the visible GPUs instead."""
    import torch

    from sweep.config import load_config
    from sweep.launch.worker import worker_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cfg = load_config(["device=cuda"])
    assert [worker_device(cfg, i) for i in range(3)] == [torch.device("cuda", i) for i in (0, 1, 0)]
    assert worker_device(load_config(["device=cuda:1"]), 0) == torch.device("cuda", 1)
