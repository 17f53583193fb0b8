"""Reading a user's per-epoch training log (sweep.trainers.logs): real Keras and Lightning
CSVLogger files (tests/data/trainer_logs/, see make_keras_blowup.py for how they were made), JSON
lines, epoch numbering, merging, and the one-line errors (pure unit tests, no framework needed)."""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import pytest

from sweep.core.errors import UserError
from sweep.trainers.logs import (
    CONTRACT_COLUMNS,
    DEFAULT_COLUMNS,
    EpochLog,
    LogError,
    parse_log,
    read_log,
)

LOGS = Path(__file__).parent / "data" / "trainer_logs"


def _raw(path: Path) -> str:
    with open(path, newline="") as f:  # keep the CRLF line ends the loggers write
        return f.read()


def rows(log: EpochLog, name: str) -> list[float]:
    return [e.get(name, math.nan) for e in log.epochs]


# ----------------------------------------------------------------------------------- the API itself


def test_contract_names_and_defaults_cover_the_curve_columns():
    assert set(CONTRACT_COLUMNS) == {
        "train_loss",
        "val_loss",
        "val_acc",
        "grad_norm_mean",
        "grad_norm_max",
        "grad_norm_p90",
        "clip_fraction",
        "pred_top_frac",
        "epoch_lr",
        "val_loss_sd",
        "train_loss_sd",
        "update_ratio",
        "sat_frac",
        "crit_lr",
        "logit_lse",
    }
    assert set(DEFAULT_COLUMNS) == set(CONTRACT_COLUMNS)
    assert DEFAULT_COLUMNS["val_acc"][:2] == ("val_acc", "val_accuracy")
    assert "train_loss_epoch" in DEFAULT_COLUMNS["train_loss"]
    assert DEFAULT_COLUMNS["train_loss"].index("train_loss_epoch") < DEFAULT_COLUMNS[
        "train_loss"
    ].index("train_loss_step")
    assert issubclass(LogError, UserError)


# ------------------------------------------------------------------------------------------- Keras


def test_real_keras_csvlogger_file_reads_one_row_per_epoch_from_epoch_0():
    log = read_log(LOGS / "keras_csvlogger.csv")
    assert log.format == "keras-csv"
    assert log.columns == {"val_acc": "val_accuracy", "val_loss": "val_loss", "train_loss": "loss"}
    assert len(log.epochs) == 4  # epochs 0..3 in the file are 1..4 here
    assert log.epochs[0] == {
        "train_loss": pytest.approx(2.0661239624023438),
        "val_loss": pytest.approx(1.5943200588226318),
        "val_acc": pytest.approx(0.5388888716697693),
    }
    assert rows(log, "val_acc")[-1] == pytest.approx(0.8972222208976746)
    assert "accuracy" not in log.epochs[0]  # the training accuracy is not a curve of lrsweep


def test_real_keras_terminate_on_nan_last_row_is_a_whole_epoch_with_inf_loss():
    log = read_log(LOGS / "keras_terminate_on_nan.csv")
    assert len(log.epochs) == 4
    last = log.epochs[-1]
    assert math.isinf(last["train_loss"]) and math.isinf(last["val_loss"])
    assert last["val_acc"] == pytest.approx(0.10555555671453476)  # validation still ran
    assert all(math.isfinite(v) for e in log.epochs[:-1] for v in e.values())


def test_real_keras_terminate_on_nan_writes_nan_and_inf_spelled_as_python_does():
    log = read_log(LOGS / "keras_terminate_on_nan_first_epoch.csv")
    (only,) = log.epochs
    assert math.isinf(only["train_loss"]) and math.isnan(only["val_loss"])


def test_keras_rows_are_complete_while_the_file_grows():
    text = _raw(LOGS / "keras_csvlogger.csv")
    growing = parse_log(text, path="m.csv", final=False)
    assert len(growing.epochs) == 4  # every written row is a finished epoch
    cut = parse_log(text[:-10], path="m.csv", final=False)
    assert len(cut.epochs) == 3  # the row still being written is left out


def test_keras_na_cells_are_absent_values():
    text = "epoch,loss,val_accuracy,val_loss\r\n0,2.0,0.5,1.9\r\n1,1.5,NA,NA\r\n"
    with pytest.raises(
        LogError, match="epoch 2 has no validation accuracy.*check_val_every_n_epoch=1"
    ):
        parse_log(text, path="/x/metrics.csv")


def test_resumed_keras_fit_appending_an_epoch_again_later_row_wins():
    text = (
        "epoch,loss,val_accuracy,val_loss\n"
        "0,2.0,0.30,1.9\n1,1.5,0.50,1.4\n2,1.2,0.60,1.1\n"
        "2,1.0,0.65,1.0\n3,0.9,0.70,0.9\n"
    )  # resumed from the checkpoint of epoch 1
    log = parse_log(text, path="m.csv")
    assert rows(log, "val_acc") == [0.30, 0.50, 0.65, 0.70]
    assert rows(log, "train_loss")[2] == 1.0  # replaced, not averaged with 1.2


def test_resume_from_an_earlier_checkpoint_drops_the_later_epochs_it_redoes():
    text = (
        '{"epoch": 1, "val_acc": 0.3}\n{"epoch": 2, "val_acc": 0.5}\n{"epoch": 3, "val_acc": 0.6}\n'
        '{"epoch": 2, "val_acc": 0.55}\n'
    )  # checkpoint of epoch 1; epoch 3 not redone yet
    log = parse_log(text, path="m.jsonl")
    assert rows(log, "val_acc") == [0.3, 0.55]


# --------------------------------------------------------------------------------------- Lightning


def test_real_lightning_file_merges_step_validation_and_epoch_rows():
    log = read_log(LOGS / "lightning_metrics.csv")
    assert log.format == "lightning-csv"
    assert log.columns == {
        "val_acc": "val_acc",
        "val_loss": "val_loss",
        "train_loss": "train_loss_epoch",
    }
    assert len(log.epochs) == 3
    first = log.epochs[0]
    assert first["val_acc"] == pytest.approx(0.09166666865348816)
    assert first["val_loss"] == pytest.approx(2.31487774848938)
    assert first["train_loss"] == pytest.approx(
        2.309967279434204
    )  # the epoch value, not the steps' mean
    steps = [2.2735583782196045, 2.3326096534729004, 2.3073766231536865, 2.3120806217193604]
    assert first["train_loss_sd"] == pytest.approx(statistics.stdev(steps))
    assert rows(log, "val_acc")[2] == pytest.approx(0.2666666805744171)


def test_real_lightning_file_before_the_header_grew_is_an_empty_log_while_running():
    path = LOGS / "lightning_metrics_before_validation.csv"
    assert (
        path.read_text().splitlines()[0] == "epoch,step,train_loss_step"
    )  # Lightning had not rewritten it yet
    assert read_log(path, final=False).epochs == []
    with pytest.raises(LogError, match="no validation accuracy column"):
        read_log(path, final=True, metric="acc")


def test_real_lightning_file_mid_epoch_leaves_out_the_unfinished_epoch():
    path = LOGS / "lightning_metrics_mid_epoch.csv"
    running = read_log(path, final=False)
    assert (
        len(running.epochs) == 1
    )  # epoch 2 has validation already, but its epoch-end row may still come
    finished = read_log(path, final=True)
    assert len(finished.epochs) == 2
    assert finished.epochs[1]["train_loss"] == pytest.approx(2.2967653274536133)


def test_lightning_epoch_still_getting_step_rows_is_left_out_while_running():
    text = _raw(LOGS / "lightning_metrics.csv")
    lines = text.splitlines(keepends=True)
    partial = "".join(lines[: 1 + 6 + 3])  # epoch 0 whole, three step rows of epoch 1
    assert len(parse_log(partial, path="metrics.csv", final=False).epochs) == 1
    with pytest.raises(LogError, match=r"line 10: epoch 2 has no validation accuracy"):
        parse_log(partial, path="metrics.csv", final=True)


def test_real_lightning_inf_stop_keeps_the_blown_epoch():
    log = read_log(LOGS / "lightning_metrics_inf_stop.csv")
    (only,) = log.epochs
    assert math.isinf(only["train_loss"]) and math.isinf(only["val_loss"])
    assert math.isnan(only["train_loss_sd"])


def test_blown_up_partial_epoch_is_reported_at_once_while_running():
    text = "epoch,step,train_loss_epoch,train_loss_step,val_acc,val_loss\n0,9,,2.3,,\n0,19,,nan,,\n"
    log = parse_log(text, path="metrics.csv", final=False)
    (only,) = (
        log.epochs
    )  # no validation yet, but the loss is already NaN: the runner can stop it now
    assert math.isnan(only["train_loss"]) and "val_acc" not in only
    assert (
        len(parse_log(text, path="metrics.csv", final=True).epochs) == 1
    )  # stopped mid-epoch: allowed


def test_real_lightning_resumed_file_runs_on_without_a_gap():
    log = read_log(LOGS / "lightning_metrics_resumed.csv")
    assert len(log.epochs) == 4
    assert rows(log, "val_acc") == pytest.approx(
        [0.10555555671453476, 0.38333332538604736, 0.7666666507720947, 0.8444444537162781]
    )


def test_lightning_step_only_train_loss_is_averaged_with_its_sd():
    text = (
        "epoch,step,train_loss,val_acc\n"
        "0,9,2.0,\n0,19,1.0,\n0,19,,0.4\n"
        "1,29,0.8,\n1,39,0.6,\n1,39,,0.6\n"
    )
    log = parse_log(text, path="metrics.csv")
    assert rows(log, "train_loss") == pytest.approx([1.5, 0.7])
    assert rows(log, "train_loss_sd") == pytest.approx(
        [statistics.stdev([2.0, 1.0]), statistics.stdev([0.8, 0.6])]
    )


def test_a_train_loss_sd_column_in_the_file_wins_over_the_computed_one():
    text = "epoch,step,train_loss,train_loss_sd,val_acc\n0,1,2.0,,\n0,2,1.0,0.25,0.5\n"
    assert parse_log(text, path="m.csv").epochs[0]["train_loss_sd"] == 0.25


def test_lightning_learning_rate_monitor_column_is_the_epoch_lr():
    text = "epoch,lr-SGD,step,train_loss_epoch,val_acc\n0,0.1,9,,\n0,,9,,0.5\n0,,9,1.2,\n"
    log = parse_log(text, path="metrics.csv")
    assert log.columns["epoch_lr"] == "lr-SGD"
    assert log.epochs[0] == {"epoch_lr": 0.1, "val_acc": 0.5, "train_loss": 1.2}


# -------------------------------------------------------------------------------------- JSON lines


def test_json_lines_nan_spellings_all_read_as_non_finite():
    text = (
        '{"epoch": 1, "train_loss": NaN, "val_loss": null, "val_acc": 0.5}\n'
        '{"epoch": 2, "train_loss": "nan", "val_loss": Infinity, "val_acc": "0.4"}\n'
        '{"epoch": 3, "train_loss": "inf", "val_loss": -Infinity, "val_acc": 0.1}\n'
    )
    log = parse_log(text, path="m.jsonl")
    assert log.format == "jsonl"
    assert math.isnan(log.epochs[0]["train_loss"]) and math.isnan(log.epochs[0]["val_loss"])
    assert math.isnan(log.epochs[1]["train_loss"]) and log.epochs[1]["val_loss"] == math.inf
    assert log.epochs[2]["train_loss"] == math.inf and log.epochs[2]["val_loss"] == -math.inf
    assert rows(log, "val_acc") == [0.5, 0.4, 0.1]


def test_json_lines_several_objects_per_epoch_are_merged():
    text = (
        '{"epoch": 1, "train_loss": 1.0}\n{"epoch": 1, "train_loss": 3.0}\n{"epoch": 1, "val_acc": 0.5}\n'
        '{"epoch": 2, "train_loss": 0.5}\n{"epoch": 2, "val_acc": 0.6}\n{"epoch": 2, "val_acc": 0.7}\n'
    )
    log = parse_log(text, path="m.jsonl")
    assert log.epochs[0] == {
        "train_loss": 2.0,
        "train_loss_sd": pytest.approx(math.sqrt(2)),
        "val_acc": 0.5,
    }
    assert log.epochs[1] == {"train_loss": 0.5, "val_acc": 0.7}  # the last validation value wins
    assert (
        len(parse_log(text, path="m.jsonl", final=False).epochs) == 1
    )  # epochs repeat: the last may grow


def test_json_lines_without_epochs_are_one_epoch_per_line_and_complete_while_running():
    text = '{"val_acc": 0.2, "val_loss": 2.0}\n{"val_acc": 0.4, "val_loss": 1.5}\n{"val_acc": 0.'
    log = parse_log(text, path="m.jsonl", final=False)
    assert rows(log, "val_acc") == [0.2, 0.4]


def test_json_line_that_is_not_an_object_names_the_line():
    with pytest.raises(LogError, match=r"m\.jsonl, line 2: not valid JSON"):
        parse_log('{"val_acc": 0.2}\n{"val_acc": oops}\n', path="m.jsonl")
    with pytest.raises(
        LogError, match=r"line 2: .*bool.*|line 2: true in column val_acc is not a number"
    ):
        parse_log('{"val_acc": 0.2}\n{"val_acc": true}\n', path="m.jsonl")


# ---------------------------------------------------------------------------- columns and numbering


def test_user_column_mapping_overrides_the_defaults():
    text = "epoch,val_acc,my_acc,my_loss\n1,0.1,0.8,0.3\n2,0.1,0.9,0.2\n"
    log = parse_log(text, path="m.csv", columns={"val_acc": "my_acc", "train_loss": "my_loss"})
    assert log.columns == {"val_acc": "my_acc", "train_loss": "my_loss"}
    assert rows(log, "val_acc") == [0.8, 0.9]
    assert rows(log, "train_loss") == [0.3, 0.2]


def test_user_mapping_to_a_column_the_file_lacks_names_it():
    with pytest.raises(
        LogError,
        match=r"metrics file /x/m\.csv has no column 'my_acc' \(trainer\.columns\.val_acc\)",
    ):
        parse_log("epoch,val_acc\n1,0.5\n", path="/x/m.csv", columns={"val_acc": "my_acc"})


def test_user_mapping_to_an_unknown_contract_name_is_an_error():
    with pytest.raises(LogError, match="trainer.columns.val_accuracy: lrsweep has no column"):
        parse_log("epoch,val_acc\n1,0.5\n", path="m.csv", columns={"val_accuracy": "val_acc"})


def test_user_mapping_of_the_epoch_column():
    log = parse_log("it,val_acc\n0,0.5\n1,0.6\n", path="m.csv", columns={"epoch": "it"})
    assert rows(log, "val_acc") == [0.5, 0.6]


def test_missing_val_acc_column_says_how_to_map_it():
    with pytest.raises(LogError) as e:
        parse_log("epoch,loss,acc\n0,1.0,0.5\n", path="/x/metrics.csv", metric="acc")
    message = str(e.value)
    assert message.startswith(
        "metrics file /x/metrics.csv has no validation accuracy column (looked for val_acc, "
    )
    assert "name yours with trainer.columns.val_acc=COLUMN" in message
    assert message.endswith("or use trainer.metric=auto for calls from the loss")
    assert "\n" not in message


def test_epochs_counted_from_0_or_from_1_both_give_epochs_1_to_n():
    from_0 = parse_log("epoch,val_acc\n0,0.1\n1,0.2\n2,0.3\n", path="m.csv")
    from_1 = parse_log("epoch,val_acc\n1,0.1\n2,0.2\n3,0.3\n", path="m.csv")
    assert from_0.epochs == from_1.epochs == [{"val_acc": 0.1}, {"val_acc": 0.2}, {"val_acc": 0.3}]


def test_a_gap_in_the_epochs_names_the_line():
    with pytest.raises(
        LogError, match=r"m\.csv, line 4: epoch 4 follows epoch 2, so epoch 3 is missing"
    ):
        parse_log("epoch,val_acc\n1,0.1\n2,0.2\n4,0.4\n", path="m.csv")
    with pytest.raises(
        LogError,
        match=r"line 2: the log starts at epoch 3, not at 0 or 1, so the epochs before it are missing; a resumed ",
    ):
        parse_log("epoch,val_acc\n3,0.1\n", path="m.csv")


def test_a_non_number_names_the_file_line_and_column():
    text = "epoch,loss,val_accuracy,val_loss\n0,1.0,0.5,1.0\n1,0.9,0.6,0.9\n\n2,0.8,abc,0.8\n"
    with pytest.raises(LogError) as e:
        parse_log(text, path="/x/metrics.csv")
    assert str(e.value) == (
        "metrics file /x/metrics.csv, line 5: 'abc' in column val_accuracy is not a number; "
        "the script must write numbers (nan/inf allowed)"
    )


def test_a_bad_epoch_value_names_the_line():
    with pytest.raises(LogError, match=r"line 3: '1.5' in column epoch is not an epoch number"):
        parse_log("epoch,val_acc\n1,0.5\n1.5,0.6\n", path="m.csv")


def test_unknown_columns_are_ignored_even_when_not_numbers():
    log = parse_log("epoch,val_acc,note\n0,0.5,warmup\n1,0.6,\n", path="m.csv")
    assert log.epochs == [{"val_acc": 0.5}, {"val_acc": 0.6}]


def test_nan_and_inf_spellings_in_csv():
    text = "val_acc,val_loss\n0.1,nan\n0.1,NaN\n0.1,inf\n0.1,-inf\n0.1,Infinity\n"
    assert [str(v) for v in rows(parse_log(text, path="m.csv"), "val_loss")] == [
        "nan",
        "nan",
        "inf",
        "-inf",
        "inf",
    ]


def test_gradient_columns_and_group_columns_pass_through():
    text = (
        "epoch,val_acc,grad_norm_mean,grad_norm_max,grad_norm_p90,clip_fraction,grad_norm_mean/encoder,"
        "grad_norm_max/encoder,other/thing\n1,0.5,1.0,3.0,2.0,0.25,0.5,1.5,9\n"
    )
    (epoch,) = parse_log(text, path="m.csv").epochs
    assert epoch == {
        "val_acc": 0.5,
        "grad_norm_mean": 1.0,
        "grad_norm_max": 3.0,
        "grad_norm_p90": 2.0,
        "clip_fraction": 0.25,
        "grad_norm_mean/encoder": 0.5,
        "grad_norm_max/encoder": 1.5,
    }


def test_n_val_and_chance_are_read_from_the_log_and_must_be_constant():
    log = parse_log("epoch,val_acc,n_val,chance\n0,0.5,360,0.1\n1,0.6,360,0.1\n", path="m.csv")
    assert (log.n_val, log.chance) == (360, 0.1)
    assert "n_val" not in log.epochs[0] and "chance" not in log.epochs[0]
    assert parse_log("epoch,val_acc\n0,0.5\n", path="m.csv").n_val is None
    with pytest.raises(LogError, match=r"line 3: n_val changes from 360 to 300"):
        parse_log("epoch,val_acc,n_val\n0,0.5,360\n1,0.6,300\n", path="m.csv")
    with pytest.raises(
        LogError, match=r"line 2: n_val 36.5 in column n_val is not a positive whole number"
    ):
        parse_log("epoch,val_acc,n_val\n0,0.5,36.5\n", path="m.csv")
    with pytest.raises(
        LogError,
        match=r"m\.jsonl, line 1: chance 1.5 in column chance is not a rate between 0 and 1",
    ):
        parse_log('{"epoch": 0, "val_acc": 0.5, "chance": 1.5}\n', path="m.jsonl")


def test_epoch_without_validation_in_the_middle_is_an_error():
    with pytest.raises(
        LogError,
        match=r"line 3: epoch 2 has no validation accuracy \(column val_acc\); log "
        r"validation every epoch \(Lightning: check_val_every_n_epoch=1\)",
    ):
        parse_log("epoch,train_loss,val_acc\n0,1.0,0.5\n1,0.9,\n2,0.8,0.6\n", path="m.csv")


def test_tab_and_semicolon_separated_csv():
    assert rows(parse_log("epoch\tval_acc\n0\t0.5\n", path="m.tsv"), "val_acc") == [0.5]
    assert rows(parse_log("epoch;val_acc\n0;0.5\n", path="m.csv"), "val_acc") == [0.5]


# -------------------------------------------------------------------------------- while it runs


def test_unfinished_last_line_is_ignored_while_running_and_read_at_the_end():
    text = "epoch,val_acc\n0,0.5\n1,0.6\n2,0.7"
    assert rows(parse_log(text, path="m.csv", final=False), "val_acc") == [0.5, 0.6]
    assert rows(parse_log(text, path="m.csv", final=True), "val_acc") == [0.5, 0.6, 0.7]
    assert (
        parse_log("epoch,val", path="m.csv", final=False).epochs == []
    )  # the header itself unfinished


def test_missing_file_is_empty_while_running_and_an_error_at_the_end(tmp_path):
    path = tmp_path / "metrics.csv"
    log = read_log(path, final=False)
    assert log.epochs == [] and log.n_val is None
    with pytest.raises(
        LogError,
        match=rf"metrics file {path} was never written; the command must write its "
        r"per-epoch log to \{metrics\}",
    ):
        read_log(path, final=True)


def test_empty_or_header_only_file_is_an_error_only_at_the_end(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("")
    assert read_log(path, final=False).epochs == []
    with pytest.raises(LogError, match="is empty"):
        read_log(path, final=True)
    path.write_text("epoch,val_acc\n")
    assert read_log(path, final=False).epochs == []
    with pytest.raises(LogError, match="holds no epoch"):
        read_log(path, final=True)


def test_messages_are_one_line_even_for_a_path_with_a_newline():
    with pytest.raises(LogError) as e:
        parse_log("epoch,val_acc\n0,x\n", path="/odd\nname.csv")
    assert "\n" not in str(e.value)


def test_parsing_1000_lightning_lines_takes_well_under_10_ms():
    lines = ["epoch,step,train_loss_epoch,train_loss_step,val_acc,val_loss"]
    step = 0
    for epoch in range(100):
        for _ in range(8):
            step += 1
            lines.append(f"{epoch},{step},,{1.0 / (step + 1)},,")
        lines.append(f"{epoch},{step},,,0.5,1.0")
        lines.append(f"{epoch},{step},0.3,,,")
    text = "\n".join(lines) + "\n"
    assert len(lines) == 1001
    parse_log(text, path="metrics.csv")  # warm up
    best = min(_timed(lambda: parse_log(text, path="metrics.csv", final=False)) for _ in range(5))
    assert best < 0.010
    assert len(parse_log(text, path="metrics.csv").epochs) == 100


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
