"""A job whose model server goes down mid-run waits in the queue and is tried again, resuming
from its cached answers, instead of failing; after the last wait it fails. A real worker against
a local OpenAI-compatible server (tests/backends/openai_stub.py) that starts answering 503."""

import html
from pathlib import Path

import pytest

from medboard.queue import worker
from medboard.queue.admin import rerun
from medboard.queue.submissions import SubmitRequest, get_submission, submit
from medboard.queue.worker import run_worker
from medboard.results.db import Database, open_database, utcnow
from medboard.runner import EvalOptions
from tests.backends.openai_stub import StubServer
from tests.conftest import import_fixture_tasks

TRACK = "flowertune_medical"  # 4 tasks, 10 questions each in the fixtures
OPTIONS = EvalOptions(allow_data_mismatch=True)
# the worker's: no retries of a request (each would wait), 4 questions per cached batch
ARGS = {"retries": "0", "batch": "4"}


@pytest.fixture()
def database(tmp_path: Path, medboard_home: Path) -> Database:
    import_fixture_tasks(medboard_home)
    return open_database(f"sqlite:///{tmp_path / 'retry.db'}")


@pytest.fixture()
def server() -> StubServer:
    stub = StubServer().start()
    yield stub
    stub.stop()


def _queue(database: Database, server: StubServer) -> int:
    request = SubmitRequest(
        model="openai:stub", track=TRACK, dtype=None, args={"base_url": server.url}
    )
    return submit(database, request).id


def test_a_job_whose_server_goes_down_waits_and_resumes(
    database: Database,
    server: StubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole = _completions_of_a_clean_run(server, tmp_path, monkeypatch)
    job_id = _queue(database, server)
    server.completions, server.down_after = 0, 12  # part-way through the first task
    assert run_worker(database, "w", once=True, options=OPTIONS, backend_args=ARGS) == 1
    job = get_submission(database, job_id)
    assert job is not None and (job.status, job.retries, job.worker) == ("pending", 1, None)
    assert job.reason.startswith("waiting to try again at ")
    assert "(1 of 5): " in job.reason and "failed 1 time(s)" in job.reason
    assert "last: 503 restarting" in job.reason
    waited = (job.not_before - utcnow()).total_seconds()
    assert 50 < waited <= 60
    _shown_waiting(database, job_id, job.not_before.isoformat(timespec="seconds"))
    # nobody takes it before then
    assert run_worker(database, "w2", once=True, options=OPTIONS, backend_args=ARGS) == 0
    assert get_submission(database, job_id).status == "pending"
    # the server is back; the operator lets the job go now rather than in a minute
    server.down_after = None
    rerun(database, job_id)
    assert run_worker(database, "w2", once=True, options=OPTIONS, backend_args=ARGS) == 1
    job = get_submission(database, job_id)
    assert (job.status, job.reason, job.retries) == ("finished", None, 1), job.reason
    assert job.entry_id is not None
    # resumed from the cache: of the 12 answered before, only those of the batch the server
    # went down in (at most 4 questions) were asked again (38 + 3 here; without the cache 50)
    assert whole < server.completions <= whole + 4


def _shown_waiting(database: Database, job_id: int, retry_at: str) -> None:
    """The queue page and API say the job waits, when it is tried next, and why."""
    from fastapi.testclient import TestClient

    from medboard.web.app import create_app

    client = TestClient(create_app(database))
    (shown,) = client.get("/api/queue").json()["submissions"]
    assert (shown["id"], shown["status"], shown["retries"]) == (job_id, "pending", 1)
    assert shown["retry_at"] == retry_at and shown["reason"].startswith("waiting to try again")
    page = html.unescape(client.get("/queue").text)
    assert "(waiting to try again)" in page and shown["reason"] in page


def _completions_of_a_clean_run(
    server: StubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> int:
    """The completions one whole evaluation of the job asks for, in a home and database of
    its own (nothing cached)."""
    with monkeypatch.context() as patch:
        home = tmp_path / "clean-home"
        patch.setenv("MEDBOARD_HOME", str(home))
        import_fixture_tasks(home)
        clean = open_database(f"sqlite:///{tmp_path / 'clean.db'}")
        _queue(clean, server)
        server.completions = 0
        assert run_worker(clean, "c", once=True, options=OPTIONS, backend_args=ARGS) == 1
    return server.completions


def test_a_server_that_stays_down_fails_the_job_after_the_last_wait(
    database: Database, server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "RETRY_WAITS", (0.0, 0.0))  # no wait between the tries
    job_id = _queue(database, server)
    server.down_after = 0
    assert run_worker(database, "w", once=True, options=OPTIONS, backend_args=ARGS) == 3
    job = get_submission(database, job_id)
    assert (job.status, job.retries, job.attempts) == ("failed", 2, 3)
    assert job.reason.endswith("last: 503 restarting (and in 2 more tries over 0 min)")
    # a rerun starts over, with its waits again
    rerun(database, job_id)
    assert get_submission(database, job_id).retries == 0


def test_the_waits_are_the_operators(
    database: Database, server: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MEDBOARD_RETRY_WAITS: durations in s, m, h, d (a bare number: seconds), or none (such a
    job fails at once); a wrong one is one line."""
    from medboard.errors import MedboardError

    monkeypatch.setenv(worker.RETRY_ENV, " 30s, 2m,1.5h ,1d,10")
    assert worker.retry_waits() == (30.0, 120.0, 5400.0, 86400.0, 10.0)
    for wrong in ("1m,,5m", "1 week", "-5s", "5x"):
        monkeypatch.setenv(worker.RETRY_ENV, wrong)
        with pytest.raises(MedboardError, match=r"^MEDBOARD_RETRY_WAITS: '.*' is not a wait"):
            worker.retry_waits()
    monkeypatch.setenv(worker.RETRY_ENV, "2h")
    job_id = _queue(database, server)
    server.down_after = 0
    assert run_worker(database, "w", once=True, options=OPTIONS, backend_args=ARGS) == 1
    job = get_submission(database, job_id)
    assert (job.status, job.retries) == ("pending", 1) and "(1 of 1): " in job.reason
    assert 7100 < (job.not_before - utcnow()).total_seconds() <= 7200
    monkeypatch.setenv(worker.RETRY_ENV, "none")
    rerun(database, job_id)
    assert run_worker(database, "w", once=True, options=OPTIONS, backend_args=ARGS) == 1
    job = get_submission(database, job_id)
    assert (job.status, job.retries) == ("failed", 1)  # let go by the rerun, then no wait
    assert job.reason.endswith("last: 503 restarting")  # no waits to speak of
