"""A first start undone after the user's mistake shows in a run (sweep.launch.first_start): only a
study this command created, holding no result, is deleted; nothing else is ever touched."""

from __future__ import annotations

from types import SimpleNamespace

import optuna

from sweep.launch.first_start import FirstStart
from sweep.store.storage import open_storage
from sweep.store.studies import study_names


def _cfg(tmp_path, name="s"):
    url = f"sqlite:///{tmp_path / 'lrsweep.db'}"
    return SimpleNamespace(
        storage_url=lambda: url, study=SimpleNamespace(name=name), study_dir=tmp_path / name
    )


def _create(cfg, complete: bool):
    study = optuna.create_study(
        study_name=cfg.study.name, storage=open_storage(cfg.storage_url()), directions=["maximize"]
    )
    if complete:
        study.add_trial(optuna.trial.create_trial(value=0.5))
    return study


def test_a_study_created_by_this_command_without_results_is_deleted_with_its_file(tmp_path):
    cfg = _cfg(tmp_path)
    before = FirstStart.look(cfg)
    assert before == FirstStart(study_existed=False, file=tmp_path / "lrsweep.db")
    _create(cfg, complete=False)
    (cfg.study_dir / "checkpoints" / "x" / "seed-0").mkdir(parents=True)
    assert before.undo(cfg)
    assert not (tmp_path / "lrsweep.db").exists()
    assert not (cfg.study_dir / "checkpoints").exists()


def test_a_study_that_holds_a_result_is_kept(tmp_path):
    cfg = _cfg(tmp_path)
    before = FirstStart.look(cfg)
    _create(cfg, complete=True)
    assert not before.undo(cfg)
    assert study_names(open_storage(cfg.storage_url())) == ["s"]


def test_a_study_that_existed_before_is_never_touched(tmp_path):
    cfg = _cfg(tmp_path)
    _create(cfg, complete=False)
    before = FirstStart.look(cfg)
    assert before.study_existed
    assert not before.undo(cfg)
    assert study_names(open_storage(cfg.storage_url())) == ["s"]


def test_another_study_in_the_same_file_keeps_the_file(tmp_path):
    other = _cfg(tmp_path, "other")
    _create(other, complete=True)
    cfg = _cfg(tmp_path)
    before = FirstStart.look(cfg)
    assert before == FirstStart(study_existed=False, file=None)
    _create(cfg, complete=False)
    assert before.undo(cfg)
    assert study_names(open_storage(cfg.storage_url())) == ["other"]


def test_listing_the_studies_reads_no_trial_so_another_users_deleted_study_cannot_break_it(
    tmp_path, monkeypatch
):
    # Seen in test_workers on PostgreSQL: a worker listed the studies while another test deleted
    # its own (as an undone first start does), and Optuna's summaries, which read every study's
    # trials, raised KeyError('Record does not exist.'): a traceback. Here every trial read fails
    # the same way; the names come from the study rows alone.
    cfg = _cfg(tmp_path)
    _create(cfg, complete=True)
    _create(_cfg(tmp_path, "other"), complete=False)
    storage = open_storage(cfg.storage_url())

    def deleted_meanwhile(*args, **kwargs):
        raise KeyError("Record does not exist.")

    for reader in ("get_all_trials", "_get_trials"):  # Optuna's cache reads through the second
        monkeypatch.setattr(storage, reader, deleted_meanwhile)
    assert sorted(study_names(storage)) == ["other", "s"]
