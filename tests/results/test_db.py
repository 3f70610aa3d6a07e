"""The results database: migrations build exactly the models' schema, on a real SQLite file."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from medboard.errors import MedboardError
from medboard.results.db import Base, Database, Entry, Model, TaskScore, open_database


def test_migrations_match_the_models(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    tables = set(inspect(database.engine).get_table_names())
    assert {"models", "entries", "runs", "task_scores", "submissions", "alembic_version"} <= tables


def test_migrate_twice_is_harmless_and_keeps_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    database = open_database(url)
    with database.session() as session:
        session.add(Model(name="m", revision="r", dtype="float32"))
    open_database(url)
    with open_database(url).session() as session:
        assert session.scalars(select(Model.name)).all() == ["m"]


def test_default_url_is_a_file_in_the_home(medboard_home: Path, monkeypatch) -> None:
    monkeypatch.delenv("MEDBOARD_DB", raising=False)
    assert Database().url == f"sqlite:///{medboard_home / 'medboard.db'}"
    monkeypatch.setenv("MEDBOARD_DB", "sqlite:///elsewhere.db")
    assert Database().url == "sqlite:///elsewhere.db"


def test_deleting_an_entry_deletes_its_scores_and_a_failed_session_writes_nothing(
    tmp_path: Path,
) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    with database.session() as session:
        entry = Entry(track="open_medical", origin="evaluated", model=Model(name="m"))
        entry.scores = [TaskScore(task="medqa_4options", metric="acc", value=0.5)]
        session.add(entry)
    with pytest.raises(RuntimeError), database.session() as session:
        session.add(Model(name="never"))
        session.flush()
        raise RuntimeError("boom")
    with database.session() as session:
        assert session.scalars(select(Model.name)).all() == ["m"]
        session.delete(session.scalars(select(Entry)).one())
    with database.session() as session:
        assert session.scalars(select(TaskScore)).all() == []


def test_bad_url_is_one_clear_error() -> None:
    with pytest.raises(MedboardError, match="cannot open database"):
        Database("nosuchdialect://x")
