"""The two databases the queue runs on, for tests that run on both: a SQLite file, and the real
PostgreSQL server of MEDBOARD_TEST_POSTGRES in a schema of the test's own (other PostgreSQL
tests wipe the public schema, maybe at the same time), dropped afterwards."""

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

POSTGRES = os.environ.get("MEDBOARD_TEST_POSTGRES")
KINDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(not POSTGRES, reason="MEDBOARD_TEST_POSTGRES is not set"),
    ),
]


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL of the test PostgreSQL database whose search path is a fresh schema."""
    assert POSTGRES
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(POSTGRES)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = (
        make_url(POSTGRES)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    try:
        yield url
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@contextlib.contextmanager
def database_url(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'queue.db'}"
    else:
        with postgres_schema() as url:
            yield url
