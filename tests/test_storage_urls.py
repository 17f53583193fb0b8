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
    from sweep.store.studies import study_names

    # It answers. (Optuna's summaries would read every study's trials in the shared test
    # database, and fail when a test running beside this one deletes its study meanwhile.)
    assert isinstance(study_names(storage), list)


def test_opening_a_server_database_tries_again_when_another_process_created_its_tables():
    """Workers started together on an empty PostgreSQL database race to create Optuna's tables;
    the losers' CREATE TABLE fails (a unique violation in pg_type, or "already exists") and is
    rolled back. Opening again finds the tables: the loser goes on. Nothing else is retried,
    and an SQLite file (created under a lock) never is."""
    import sqlalchemy.exc

    from sweep.store import storage as module

    def failing(errors):
        calls = []

        def open_rdb():
            calls.append(1)
            if len(calls) <= len(errors):
                raise errors[len(calls) - 1]
            return "storage"

        return open_rdb, calls

    race = sqlalchemy.exc.IntegrityError("CREATE TABLE", {}, Exception("pg_type_typname_nsp_index"))
    exists = sqlalchemy.exc.ProgrammingError(
        "CREATE TABLE", {}, Exception('"studies" already exists')
    )
    other = sqlalchemy.exc.ProgrammingError("SELECT", {}, Exception("permission denied"))
    open_rdb, calls = failing([race, exists])
    assert module._created_once(open_rdb, server=True) == "storage" and len(calls) == 3
    for errors, server in (([race], False), ([other], True)):
        open_rdb, calls = failing(errors)
        with pytest.raises(type(errors[0])):
            module._created_once(open_rdb, server=server)
        assert len(calls) == 1
    open_rdb, calls = failing([race] * module.CREATION_TRIES)
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        module._created_once(open_rdb, server=True)
    assert len(calls) == module.CREATION_TRIES


@pytest.mark.postgres
def test_six_processes_opening_an_empty_postgresql_schema_at_once_all_get_the_storage(
    postgres_url,
):
    """The race itself, on a real server: a new, empty schema, opened by six threads at once
    (each its own engine and connections, as six workers would)."""
    import threading
    import uuid

    import sqlalchemy

    schema = f"race_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(driver_url(postgres_url))
    with admin.begin() as c:
        c.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    start, opened, failed = threading.Barrier(6), [], []

    def worker():
        start.wait()
        try:
            opened.append(open_storage(url))
        except Exception as e:  # noqa: BLE001 - the test reports every failure
            failed.append(repr(e))

    try:
        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not failed and len(opened) == 6, failed
        import optuna

        assert optuna.get_all_study_names(opened[0]) == []
    finally:
        for storage in opened:
            storage.engine.dispose()
        with admin.begin() as c:
            c.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
