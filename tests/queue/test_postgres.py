"""The same database code on a real PostgreSQL server: migrations, SKIP LOCKED claims, leases.

Needs MEDBOARD_TEST_POSTGRES (a URL of a database the tests may wipe), which .ci/run sets after
starting PostgreSQL; skipped without it.
"""

import multiprocessing
import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, select, text, update

from medboard.leaderboard.published import import_published
from medboard.queue.claims import claim, heartbeat
from medboard.results.db import Base, Database, Entry, Model, Submission, open_database, utcnow

URL = os.environ.get("MEDBOARD_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not URL, reason="MEDBOARD_TEST_POSTGRES is not set")


@pytest.fixture()
def database() -> Database:
    engine = create_engine(URL)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return open_database(URL)


def test_migrations_match_the_models_on_postgres(database: Database) -> None:
    assert database.engine.dialect.name == "postgresql"
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def _drain(url: str, name: str, queue: "multiprocessing.Queue[list[int]]") -> None:
    database = Database(url)
    taken = []
    while (job := claim(database, name)) is not None:
        taken.append(job.id)
    queue.put(taken)


def test_workers_in_separate_processes_never_share_a_job(database: Database) -> None:
    with database.session() as session:
        jobs = [
            Submission(model=f"m{i}", revision=f"r{i}", dtype="float32", track="open_medical")
            for i in range(40)
        ]
        session.add_all(jobs)
    ids = sorted(j.id for j in jobs)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_drain, args=(URL, f"w{i}", results)) for i in range(4)]
    for worker in workers:
        worker.start()
    taken = [job for _ in workers for job in results.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(taken) == ids  # every job once, none twice
    with database.session() as session:
        running = session.scalar(
            select(func.count()).select_from(Submission).where(Submission.status == "running")
        )
    assert running == 40


def test_expired_lease_is_reclaimed_on_postgres(database: Database) -> None:
    with database.session() as session:
        session.add(Submission(model="m", revision="r", dtype="float32", track="open_medical"))
    job = claim(database, "dead", lease_seconds=60)
    assert claim(database, "alive", lease_seconds=60) is None
    with database.session() as session:
        session.execute(update(Submission).values(heartbeat_at=utcnow().replace(year=2000)))
    again = claim(database, "alive", lease_seconds=60)
    assert again.id == job.id and again.attempts == 2
    assert not heartbeat(database, job.id, "dead")


def test_published_import_on_postgres(database: Database, tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("model,track,pubmedqa,medmcqa\norg/a,flowertune_medical,50,40\n")
    assert import_published(database, table).added == 1
    with database.session() as session:
        (entry,) = session.scalars(select(Entry)).all()
        assert {s.task: s.value for s in entry.scores} == {"pubmedqa": 0.5, "medmcqa": 0.4}


def test_a_model_of_billions_of_parameters_fits_on_postgres(database: Database) -> None:
    with database.session() as session:
        session.add(Model(name="org/big", dtype="bfloat16", parameters=70_553_706_496))
    with database.session() as session:
        assert session.scalar(select(Model.parameters)) == 70_553_706_496


def test_a_run_of_one_question_is_recorded_on_postgres(
    database: Database, medboard_home: Path
) -> None:
    """Its standard error is nan, which Python's JSON writes as NaN and PostgreSQL refuses
    ("invalid input syntax for type json"): recording the entry failed. It is null now."""
    from medboard.backends import registry
    from medboard.evaluation import evaluate_spec
    from medboard.results.db import Run
    from medboard.runner import EvalOptions
    from medboard.tasks import REGISTRY
    from tests.conftest import import_fixture_tasks

    import_fixture_tasks(medboard_home)
    options = EvalOptions(limit=1, allow_data_mismatch=True)
    evaluated = evaluate_spec(
        registry.resolve("fake"), REGISTRY.resolve("open_medical", None), options
    )
    entry_id = evaluated.record(database, "open_medical", {"name": "one"}, "test")
    with database.session() as session:
        assert session.get(Entry, entry_id) is not None
        stored = session.scalars(select(Run.result)).all()
    assert stored and all(r["scores"]["acc"]["stderr"] is None for r in stored)
