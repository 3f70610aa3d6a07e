"""Real `medboard worker` processes sharing one PostgreSQL queue: each job once, none lost.

Four worker subprocesses (fake backend, one shared MEDBOARD_HOME as on one machine) drain forty
jobs; then again with one of them killed by SIGKILL mid-job, whose job a survivor takes over once
its lease expires. A job evaluated twice would leave a second leaderboard entry, which the
tests count. Needs MEDBOARD_TEST_POSTGRES (a database the tests may write to: they work in a
schema of their own and drop it afterwards); skipped without it.
"""

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, select, text

from medboard.results.db import Database, Entry, Submission, open_database
from tests.conftest import import_fixture_tasks

URL = os.environ.get("MEDBOARD_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not URL, reason="MEDBOARD_TEST_POSTGRES is not set")

TRACK = "flowertune_medical"  # 4 tasks, 10 questions in the fixtures
QUESTIONS = 10
JOBS = 40
WORKER = [sys.executable, "-c", "from medboard.cli import main; main()", "worker"]
# the worker's log lines (stderr) as it takes up a job and as it records the job's entry
STARTED = rf"job #(\d+): fake:\S+ \(none\) on {TRACK}"
FINISHED = r"job #(\d+) finished: entry (\d+)"


@pytest.fixture()
def url() -> Iterator[str]:
    """The test database, in a schema of its own: other PostgreSQL tests, which wipe the public
    schema, may run at the same time, and the workers here run for many seconds."""
    schema = f"workers_{uuid.uuid4().hex[:12]}"
    engine = create_engine(URL)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = (
        make_url(URL)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    own = create_engine(url)
    with own.connect() as connection:
        assert connection.scalar(text("SELECT current_schema()")) == schema
    own.dispose()
    yield url
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture()
def database(url: str) -> Iterator[Database]:
    database = open_database(url)
    yield database
    database.engine.dispose()


@pytest.fixture()
def home(medboard_home: Path) -> Path:
    import_fixture_tasks(medboard_home)
    return medboard_home


def _queue(database: Database, delay: float) -> list[int]:
    """JOBS fake models, each its own (model, revision): `bias` differs, so do their run keys."""
    jobs = []
    for i in range(JOBS):
        options = f"delay={delay},batch=1,bias=b{i:02d}"
        jobs.append(
            Submission(
                model=f"fake:{options}",
                revision=options,  # the fake backend's identity revision is its options
                dtype="none",
                track=TRACK,
                info={"kind": "fake"},
            )
        )
    with database.session() as session:  # fake models need no validation: queue them directly
        session.add_all(jobs)
    return sorted(job.id for job in jobs)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Worker:
    """One `medboard worker` subprocess, its output in files (read when something goes wrong)."""

    def __init__(self, url: str, home: Path, logs: Path, name: str, *options: str) -> None:
        self.name = name
        self.out = logs / f"{name}.out"
        self.err = logs / f"{name}.err"
        env = {**os.environ, "MEDBOARD_HOME": str(home), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
        command = [*WORKER, "--allow-data-mismatch", "--db", url, "--name", name, *options]
        with self.out.open("w") as out, self.err.open("w") as err:
            # Ctrl-C as from a terminal: a shell running this suite in the background (`cmd &`)
            # ignores SIGINT, and an ignored signal stays ignored in every child it starts.
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=err, preexec_fn=_default_sigint
            )

    def log(self) -> str:
        return (
            f"--- {self.name} stdout:\n{self.out.read_text()}\n--- stderr:\n{self.err.read_text()}"
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"worker {self.name} did not stop within {timeout} s\n{self.log()}")

    def handled(self) -> int:
        """The jobs the worker says it handled ("worker stopped after N job(s)")."""
        found = re.search(r"after (\d+) job\(s\)", self.out.read_text())
        assert found, self.log()
        return int(found.group(1))

    def logged(self, pattern: str) -> list[tuple[int, ...]]:
        """The numbers in each of the worker's log lines that match `pattern`."""
        return [tuple(map(int, m.groups())) for m in re.finditer(pattern, self.err.read_text())]


@pytest.fixture()
def workers() -> Iterator[list[Worker]]:
    """Workers a test starts; any still running at the end are killed (a failed test)."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def _jobs(database: Database) -> list[Submission]:
    with database.session() as session:
        return list(session.scalars(select(Submission).order_by(Submission.id)).all())


def _entries(database: Database) -> dict[int, str]:
    """Entry id -> the model name it records, for every entry of the track."""
    with database.session() as session:
        entries = session.scalars(select(Entry).where(Entry.track == TRACK)).all()
        return {entry.id: entry.model.name for entry in entries}


def _assert_each_job_once(database: Database, ids: list[int]) -> list[Submission]:
    """Every job finished with its own entry, and the track holds those entries and no more."""
    jobs = _jobs(database)
    assert [job.id for job in jobs] == ids
    assert Counter(job.status for job in jobs) == {"finished": JOBS}, [
        (job.id, job.status, job.worker, job.reason) for job in jobs if job.status != "finished"
    ]
    entry_ids = [job.entry_id for job in jobs]
    assert None not in entry_ids
    assert len(set(entry_ids)) == JOBS
    entries = _entries(database)
    assert len(entries) == JOBS  # a job done twice would have left a second entry
    assert {job.entry_id: job.model for job in jobs} == entries
    return jobs


def _assert_logs_match(workers: list[Worker], jobs: list[Submission]) -> Counter[int]:
    """Each job's entry was recorded once, by the worker the queue names; returns how many times
    each job was taken up. (The logs show a job evaluated twice even when the database refused
    the second entry.)"""
    finished = sorted(
        (job, worker.name, entry) for worker in workers for job, entry in worker.logged(FINISHED)
    )
    assert finished == [(job.id, job.worker, job.entry_id) for job in jobs]
    return Counter(job for worker in workers for (job,) in worker.logged(STARTED))


def _answers(home: Path, revision: str) -> int:
    """Questions answered so far in the answer caches of the fake model with this revision."""
    from medboard.backends.fake import FakeBackend
    from medboard.data.store import DataStore
    from medboard.results.store import RunStore
    from medboard.runner import run_spec
    from medboard.tasks import REGISTRY

    backend, store, runs = FakeBackend(revision), DataStore(home / "data"), RunStore(home / "runs")
    total = 0
    for task in REGISTRY.resolve(TRACK, None):
        data_hash = store.task_data(task, allow_mismatch=True).content_hash
        cache = runs.folder(run_spec(task, backend, data_hash, None).key()) / "cache.sqlite"
        if cache.exists():
            with contextlib.suppress(sqlite3.Error), sqlite3.connect(cache) as db:
                total += db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    return total


def _running_job(database: Database, worker: str) -> Submission | None:
    with database.session() as session:
        return session.scalars(
            select(Submission).where(Submission.status == "running", Submission.worker == worker)
        ).one_or_none()


def test_four_workers_finish_forty_jobs_exactly_once(
    url: str, database: Database, home: Path, tmp_path: Path, workers: list[Worker]
) -> None:
    ids = _queue(database, delay=0.02)
    workers += [Worker(url, home, tmp_path, f"w{i}", "--once") for i in range(4)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.log()

    jobs = _assert_each_job_once(database, ids)
    assert all(job.attempts == 1 for job in jobs)
    assert _assert_logs_match(workers, jobs) == dict.fromkeys(ids, 1)
    done_by = Counter(job.worker for job in jobs)
    assert done_by == {worker.name: worker.handled() for worker in workers if worker.handled()}
    assert len(done_by) > 1, done_by  # the workers really shared the queue


def test_worker_killed_mid_job_is_reclaimed_by_another_exactly_once(
    url: str, database: Database, home: Path, tmp_path: Path, workers: list[Worker]
) -> None:
    lease = 6.0
    ids = _queue(database, delay=0.1)  # about 1 s a job: 10 questions, one a batch
    # Long-running workers (no --once), as deployed: the survivors are still polling when the
    # lease of the killed worker's job expires, and are stopped with Ctrl-C once all is done.
    options = ("--lease", str(lease), "--poll", "0.2")
    doomed = Worker(url, home, tmp_path, "doomed", *options)
    survivors = [Worker(url, home, tmp_path, f"s{i}", *options) for i in range(3)]
    workers += [doomed, *survivors]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until `doomed` is part-way through a job
        job = _running_job(database, "doomed")
        if job is not None and 2 <= _answers(home, job.revision) <= QUESTIONS // 2:
            break
        assert doomed.process.poll() is None, doomed.log()
        time.sleep(0.05)
    else:
        pytest.fail(f"the doomed worker never got part-way through a job\n{doomed.log()}")
    os.kill(doomed.process.pid, signal.SIGKILL)
    assert doomed.wait(timeout=30) == -signal.SIGKILL

    orphan = _running_job(database, "doomed")
    assert orphan is not None and orphan.attempts == 1
    assert 0 < _answers(home, orphan.revision) < QUESTIONS, "the job was not cut off mid-way"
    last_beat = orphan.heartbeat_at

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with database.session() as session:
            states = Counter(session.scalars(select(Submission.status)).all())
        if states["failed"]:
            break
        logged = sum(len(worker.logged(FINISHED)) for worker in workers)
        if states == {"finished": JOBS} and logged >= JOBS:
            break
        for worker in survivors:
            assert worker.process.poll() is None, worker.log()
        time.sleep(0.2)
    for worker in survivors:  # idle now (or stuck, which the checks below report): Ctrl-C
        worker.process.send_signal(signal.SIGINT)
    codes = [worker.wait(timeout=30) for worker in survivors]

    jobs = _assert_each_job_once(database, ids)
    reclaimed = next(job for job in jobs if job.id == orphan.id)
    assert reclaimed.attempts == 2
    assert reclaimed.worker in {worker.name for worker in survivors}
    # taken over only once the lease of its last heartbeat had run out
    assert reclaimed.updated_at >= last_beat + timedelta(seconds=lease)
    assert all(job.attempts == 1 for job in jobs if job.id != orphan.id)
    taken_up = _assert_logs_match(workers, jobs)
    assert taken_up == {job: 2 if job == orphan.id else 1 for job in ids}
    assert (orphan.id,) in doomed.logged(STARTED)
    for worker, code in zip(survivors, codes, strict=True):
        assert code == 130, worker.log()  # "interrupted", as Ctrl-C stops any medboard command
        assert "Traceback" not in worker.err.read_text(), worker.log()
    with database.session() as session:
        entry = session.get(Entry, reclaimed.entry_id)
        assert entry.source == f"submission #{orphan.id}"
        assert {score.task for score in entry.scores} == {
            "pubmedqa",
            "medmcqa",
            "medqa_4options",
            "careqa_en",
        }
