"""Duplicates refused by the database: eight concurrent submissions of one model, through
`submit()` and through `POST /api/submit`, on SQLite and on the real PostgreSQL, queue one job,
and the worker that drains the queue records one entry."""

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import medboard.queue.submissions as submissions
from medboard.backends import ModelInfo, ModelSpec, registry
from medboard.errors import DuplicateSubmissionError
from medboard.queue.admin import AdminError, rerun
from medboard.queue.claims import claim, fail
from medboard.queue.submissions import SubmitRequest, submit
from medboard.queue.worker import run_worker
from medboard.results.db import Database, Entry, Submission, open_database
from medboard.runner import EvalOptions
from medboard.web.app import create_app
from tests.conftest import import_fixture_tasks
from tests.queue.databases import KINDS, database_url
from tests.servers import medboard_serve

TRACK = "flowertune_medical"  # 4 tasks, 10 questions each in the fixtures
OPTIONS = EvalOptions(allow_data_mismatch=True)  # the fixtures are not the real benchmarks
N = 8


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture()
def database(url: str) -> Iterator[Database]:
    database = open_database(url)
    yield database
    database.engine.dispose()


@pytest.fixture()
def home(medboard_home: Path) -> Path:
    import_fixture_tasks(medboard_home)
    return medboard_home


def _all_at_once(validate: Callable[[ModelSpec], ModelInfo]) -> Callable[[ModelSpec], ModelInfo]:
    """`validate`, but each of the N callers waits for the others: all N have validated the
    model before any of them checks for a duplicate and inserts (the race of the issue)."""
    barrier = threading.Barrier(N, timeout=60)

    def validated(spec: ModelSpec) -> ModelInfo:
        try:
            info = validate(spec)
        except BaseException:
            barrier.abort()  # the others stop waiting at once; this caller's error is the cause
            raise
        barrier.wait()
        return info

    return validated


def _in_threads(call: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * N

    def run(i: int) -> None:
        try:
            results[i] = call(i)
        except BaseException as exc:  # noqa: BLE001 - kept, asserted on by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(N)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _described(results: list[Any]) -> list[str]:
    """Each caller's outcome in one line (a response's status and body, or the exception it
    raised), for an assertion message that shows which caller failed first and how."""
    lines = []
    for i, result in enumerate(results):
        if isinstance(result, BaseException):
            lines.append(f"caller {i}: raised {type(result).__name__}: {result!r}")
        elif hasattr(result, "status_code"):
            lines.append(f"caller {i}: HTTP {result.status_code}: {result.text[:300]}")
        else:
            lines.append(f"caller {i}: {result!r}")
    return lines


def _drain_and_count(database: Database) -> tuple[list[Submission], list[Entry]]:
    run_worker(database, "drainer", once=True, options=OPTIONS)
    with database.session() as session:
        jobs = list(session.scalars(select(Submission).order_by(Submission.id)).all())
        entries = list(session.scalars(select(Entry).where(Entry.track == TRACK)).all())
    return jobs, entries


@pytest.mark.parametrize("fast_path", [True, False], ids=["with-read-check", "index-alone"])
def test_eight_concurrent_submit_calls_queue_one_job_and_one_entry(
    url: str, database: Database, home: Path, monkeypatch: pytest.MonkeyPatch, fast_path: bool
) -> None:
    if not fast_path:  # every submitter passes the friendly read check: the index alone decides
        monkeypatch.setattr(submissions, "_duplicate", lambda *args, **kwargs: None)
    validate = _all_at_once(registry.validate)

    def one(i: int) -> Submission:
        own = Database(url)  # an engine each, as separate server processes have
        try:
            request = SubmitRequest(model="fake:bias=A", track=TRACK, submitter=f"s{i}")
            return submit(own, request, validate=validate)
        finally:
            own.engine.dispose()

    results = _in_threads(one)
    queued = [r for r in results if isinstance(r, Submission)]
    refused = [r for r in results if isinstance(r, DuplicateSubmissionError)]
    assert len(queued) == 1 and len(refused) == N - 1, _described(results)
    job_id = queued[0].id
    for exc in refused:
        assert exc.submission_id == job_id
        assert f"submitted already as #{job_id}" in str(exc)
        assert f"/queue#submission-{job_id}" in str(exc)

    jobs, entries = _drain_and_count(database)
    assert [(j.id, j.status) for j in jobs] == [(job_id, "finished")], [j.reason for j in jobs]
    assert [e.id for e in entries] == [jobs[0].entry_id]
    with pytest.raises(DuplicateSubmissionError, match=f"see /model/{jobs[0].entry_id}"):
        submit(database, SubmitRequest(model="fake:bias=A", track=TRACK))


def test_a_job_run_again_links_the_entry_it_has_instead_of_a_second(
    database: Database, home: Path
) -> None:
    job = submit(database, SubmitRequest(model="fake:bias=B", track=TRACK))
    (done,), (entry,) = _drain_and_count(database)
    rerun(database, job.id)  # finished -> pending: its answers are cached, its entry exists
    (again,), entries = _drain_and_count(database)
    assert again.status == "finished" and again.entry_id == done.entry_id == entry.id
    assert [e.id for e in entries] == [entry.id]


def test_a_failed_job_is_not_rerun_over_its_resubmission(database: Database, home: Path) -> None:
    first = submit(database, SubmitRequest(model="fake:bias=C", track=TRACK))
    assert claim(database, "w").id == first.id
    fail(database, first.id, "w", "out of memory")
    second = submit(database, SubmitRequest(model="fake:bias=C", track=TRACK))  # allowed now
    with pytest.raises(AdminError, match=f"submitted again as #{second.id}"):
        rerun(database, first.id)
    with database.session() as session:
        assert session.get(Submission, first.id).status == "failed"


def test_eight_concurrent_api_posts_give_one_201_and_seven_409s(
    url: str,
    database: Database,
    home: Path,
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDBOARD_MODELS_DIR", str(tiny_model.parent))
    app = create_app(database)
    app.state.submit = partial(submit, validate=_all_at_once(registry.validate))
    body = {"model": str(tiny_model), "track": TRACK, "dtype": "float32"}

    def post(i: int) -> Any:
        return TestClient(app).post("/api/submit", json={**body, "submitter": f"s{i}"})

    responses = _in_threads(post)
    codes = sorted(getattr(r, "status_code", 0) for r in responses)
    assert codes == [201] + [409] * (N - 1), _described(responses)
    (created,) = [r.json() for r in responses if r.status_code == 201]
    job_id = created["submission"]["id"]
    for response in responses:
        if response.status_code == 409:
            data = response.json()
            assert data["submission_id"] == job_id
            assert data["link"] == f"/queue#submission-{job_id}"
            assert f"submitted already as #{job_id}" in data["detail"]

    jobs, entries = _drain_and_count(database)
    assert [(j.id, j.status) for j in jobs] == [(job_id, "finished")], [j.reason for j in jobs]
    assert [e.id for e in entries] == [jobs[0].entry_id]
    # and now the form links the entry
    app.state.submit = submit
    html = TestClient(app).post("/submit", data=body)
    assert html.status_code == 409
    assert f'href="/model/{entries[0].id}"' in html.text


def _post(url: str, body: dict[str, Any]) -> Any:
    """POST body as JSON; the answer's status and text, an error status included."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return SimpleNamespace(status_code=response.status, text=response.read().decode())
    except urllib.error.HTTPError as exc:
        return SimpleNamespace(status_code=exc.code, text=exc.read().decode())


def test_eight_concurrent_posts_to_a_fresh_server_give_one_201_and_seven_409s(
    home: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """The same race on a real `medboard serve` that has imported nothing yet, so that each
    request's check imports transformers in a thread of its own: 7 of 8 answered HTTP 500
    ("cannot import name 'AutoConfig' from 'transformers'") before
    hf_loading.import_transformers."""
    body = {"model": str(tiny_model), "track": TRACK, "dtype": "float32"}
    barrier = threading.Barrier(N, timeout=60)
    serving = medboard_serve(home, tmp_path, ["--workers", "0", "--allow-data-mismatch"])
    url = next(serving)
    try:

        def post(i: int) -> Any:
            barrier.wait()
            return _post(f"{url}/api/submit", {**body, "submitter": f"s{i}"})

        responses = _in_threads(post)
    finally:
        serving.close()
    codes = sorted(getattr(r, "status_code", 0) for r in responses)
    assert codes == [201] + [409] * (N - 1), _described(responses)
