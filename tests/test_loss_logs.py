"""Logs without a meaningful accuracy (issue 27): what the log reader accepts and refuses when
the calls read the loss, and the columns of the collapse signals that lrsweep's callbacks write."""

from __future__ import annotations

import math

import pytest

from sweep.trainers.logs import LogError, parse_log


def test_a_keras_log_with_only_loss_and_val_loss_is_read():
    text = "epoch,loss,val_loss\n0,2.0,2.1\n1,1.5,1.6\n2,1.2,1.4\n"
    log = parse_log(text, path="m.csv")
    assert log.format == "keras-csv"
    assert log.columns == {"train_loss": "loss", "val_loss": "val_loss"}
    assert [e["val_loss"] for e in log.epochs] == [2.1, 1.6, 1.4]
    assert log.n_val is None and log.chance is None


def test_a_log_without_validation_is_read_from_the_training_loss():
    log = parse_log('{"loss": 3.0}\n{"loss": 2.0}\n{"loss": 1.0}\n', path="m.jsonl")
    assert [e["train_loss"] for e in log.epochs] == [3.0, 2.0, 1.0]


def test_a_running_loss_only_log_holds_back_an_epoch_without_its_loss():
    text = "epoch,step,train_loss_step,val_loss\n0,1,2.0,\n0,2,1.8,\n0,2,,1.9\n1,3,1.5,\n"
    running = parse_log(text, path="metrics.csv", final=False)
    assert [e["val_loss"] for e in running.epochs] == [1.9]  # epoch 1 (from 0) may still grow
    with pytest.raises(LogError, match="epoch 2 has no validation loss"):
        parse_log(text, path="metrics.csv", final=True)


def test_a_log_with_neither_an_accuracy_nor_a_loss_is_refused_in_one_line():
    with pytest.raises(LogError) as e:
        parse_log("epoch,lr\n0,0.1\n1,0.1\n", path="/x/metrics.csv")
    message = str(e.value)
    assert message.startswith("metrics file /x/metrics.csv has neither an accuracy nor a loss")
    assert "trainer.columns.train_loss=COLUMN" in message and "\n" not in message


def test_metric_acc_on_a_log_without_accuracy_is_refused():
    with pytest.raises(LogError, match="no validation accuracy column .*metric=acc reads one"):
        parse_log("epoch,loss,val_loss\n0,2,2\n1,1,1\n", path="m.csv", metric="acc")


def test_a_constant_loss_is_refused_when_the_calls_read_it():
    text = "epoch,loss\n0,0.5\n1,0.5\n2,0.5\n3,0.5\n"
    with pytest.raises(
        LogError, match=r"column loss holds 0.5 in every epoch.*optimiser minimises"
    ):
        parse_log(text, path="m.csv", metric="loss")
    # two epochs cannot tell a constant from a plateau; a running log is not judged yet
    assert len(parse_log("epoch,loss\n0,0.5\n1,0.5\n", path="m.csv", metric="loss").epochs) == 2
    assert len(parse_log(text, path="m.csv", metric="loss", final=False).epochs) == 4


@pytest.mark.parametrize("final", [True, False])
def test_an_accuracy_outside_0_1_is_refused_as_soon_as_it_is_read(final):
    text = "epoch,val_acc,val_loss\n0,0.4,1.0\n1,1.73,0.9\n2,0.5,0.8\n"
    with pytest.raises(LogError, match=r"line 3: 1.73 in column val_acc is not an accuracy"):
        parse_log(text, path="m.csv", final=final)


def test_mapping_a_loss_onto_the_accuracy_is_refused():
    text = "epoch,val_loss\n0,0.7\n1,0.6\n"
    with pytest.raises(
        LogError, match=r"trainer.columns.val_acc=val_loss: that column holds a loss"
    ):
        parse_log(text, path="m.csv", columns={"val_acc": "val_loss"})


def test_chance_loss_and_the_nonfinite_origin_are_read_from_the_log():
    text = (
        '{"epoch": 1, "loss": 2.0, "chance_loss": 2.3026}\n'
        '{"epoch": 2, "loss": 1.0, "chance_loss": 2.3026}\n'
        '{"epoch": 3, "loss": NaN, "chance_loss": 2.3026, "nonfinite_origin": "decoder"}\n'
    )
    log = parse_log(text, path="m.jsonl")
    assert log.chance_loss == pytest.approx(2.3026)
    assert log.nonfinite_origin == "decoder"
    assert "chance_loss" not in log.epochs[0] and "nonfinite_origin" not in log.epochs[2]
    assert math.isnan(log.epochs[2]["train_loss"])


def test_a_chance_loss_that_changes_is_refused():
    text = '{"loss": 2.0, "chance_loss": 2.3}\n{"loss": 1.0, "chance_loss": 1.1}\n'
    with pytest.raises(LogError, match="chance_loss changes from 2.3 to 1.1"):
        parse_log(text, path="m.jsonl")


def test_the_collapse_signals_pass_through_with_their_groups():
    text = (
        "epoch,loss,val_loss,update_ratio,update_ratio/rnn.l0,sat_frac,sat_frac/lstm,crit_lr,"
        "logit_lse,other\n0,1.0,1.1,0.001,0.002,0.1,0.2,0.5,2.0,7\n"
    )
    log = parse_log(text, path="m.csv")
    row = log.epochs[0]
    assert row["update_ratio"] == 0.001 and row["update_ratio/rnn.l0"] == 0.002
    assert row["sat_frac"] == 0.1 and row["sat_frac/lstm"] == 0.2
    assert row["crit_lr"] == 0.5 and row["logit_lse"] == 2.0
    assert "other" not in row


def test_a_keras_log_without_validation_reads_the_training_loss():
    # Keras's CSVLogger writes val_loss as NA in every row of a fit without validation data
    text = "epoch,loss,val_loss\r\n0,2.0,NA\r\n1,1.5,NA\r\n2,1.2,NA\r\n"
    log = parse_log(text, path="m.csv")
    assert log.columns == {"train_loss": "loss"}
    assert [e["train_loss"] for e in log.epochs] == [2.0, 1.5, 1.2]
    running = parse_log(text, path="m.csv", final=False)
    assert [e["train_loss"] for e in running.epochs] == [2.0, 1.5, 1.2]


def test_the_callbacks_nonfinite_origin_flags_name_the_group_and_leave_the_curves():
    text = (
        '{"epoch": 1, "loss": 2.0, "nonfinite_origin/decoder": 0, "nonfinite_origin/enc": 0}\n'
        '{"epoch": 2, "loss": NaN, "nonfinite_origin/decoder": 1, "nonfinite_origin/enc": 0}\n'
    )
    log = parse_log(text, path="m.jsonl")
    assert log.nonfinite_origin == "decoder"
    assert all(not k.startswith("nonfinite_origin") for row in log.epochs for k in row)
