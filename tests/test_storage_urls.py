"""Storage URLs: a postgresql:// URL reaches the driver the `postgres` extra installs (psycopg 3)
on every SQLAlchemy the dependencies allow, and a missing driver is told with what to install."""

from __future__ import annotations

import pytest

from sweep.core.errors import UserError
from sweep.store.storage import check_storage_url, driver_url, open_storage


def _installed(*names: str):
    return lambda name: name in names


@pytest.mark.parametrize(
    "url, installed, expected",
    [
        # psycopg 3 (what the extra installs): a bare URL is sent to it, whatever else is there
        ("postgresql://u:p@h:5432/db", ("psycopg",), "postgresql+psycopg://u:p@h:5432/db"),
        (
            "postgresql://u@h/db?sslmode=require",
            ("psycopg", "psycopg2"),
            "postgresql+psycopg://u@h/db?sslmode=require",
        ),
        ("PostgreSQL://h/db", ("psycopg",), "postgresql+psycopg://h/db"),
        # only psycopg2, or no driver: as given (SQLAlchemy's default; a missing one is told)
        ("postgresql://u@h/db", ("psycopg2",), "postgresql://u@h/db"),
        ("postgresql://u@h/db", (), "postgresql://u@h/db"),
        # a URL that names its driver, and other databases: as given
        ("postgresql+psycopg2://u@h/db", ("psycopg",), "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg://u@h/db", ("psycopg",), "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", ("psycopg",), "sqlite:///x.db"),
        ("mysql://u@h/db", ("psycopg",), "mysql://u@h/db"),
    ],
)
def test_a_bare_postgresql_url_goes_to_psycopg_3_when_it_is_installed(url, installed, expected):
    assert driver_url(url, _installed(*installed)) == expected


def test_the_driver_the_extra_installs_is_the_one_a_bare_url_reaches():
    pytest.importorskip("psycopg")
    from sqlalchemy.engine import make_url

    dialect = make_url(driver_url("postgresql://u@h/db")).get_dialect()
    assert dialect.driver == "psycopg"
    check_storage_url("postgresql://u:secret@h/db")  # parses, and its driver imports


def test_a_missing_driver_says_to_install_the_extra_not_psycopg2(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name.split(".")[0] in ("psycopg", "psycopg2"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(UserError) as e:
        check_storage_url("postgresql://u:secret@h/db")
    message = str(e.value)
    assert "pip install 'lrsweep[postgres]'" in message and "secret" not in message
    assert "psycopg2-binary" not in message and "psycopg 3" in message


@pytest.mark.postgres
def test_a_bare_postgresql_url_opens_a_real_server(postgres_url):
    bare = "postgresql://" + postgres_url.split("://", 1)[1]
    storage = open_storage(bare)
    assert storage.engine.url.drivername == "postgresql+psycopg"
    import optuna

    optuna.get_all_study_summaries(storage, include_best_trial=False)  # it answers
