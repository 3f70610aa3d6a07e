"""The submit form, the queue page, their JSON twins and bad input."""

import csv
import io
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from medboard.backends import ModelInfo, ModelSpec
from medboard.errors import ModelError
from medboard.queue.submissions import submit
from medboard.results.db import Database, Submission
from medboard.tasks import REGISTRY
from medboard.web.app import create_app
from medboard.web.filters import eta_text
from medboard.web.jobs import ago_text


def fake_validate(spec: ModelSpec) -> ModelInfo:
    """A model check without a model: a name with `bad` in it fails, anything else is a 1B
    causal LM."""
    if "bad" in spec.model:
        raise ModelError(f"{spec.model} is not a causal LM (architecture BertModel)")
    return ModelInfo(
        kind="dir",
        location=spec.model,
        revision=spec.get("revision") or f"rev-{spec.model}",
        parameters=1_000_000_000,
        architecture="LlamaForCausalLM",
        license="apache-2.0",
        adapter_hash="",
    )


@pytest.fixture()
def queue_client(
    database: Database, evaluated_id: int, monkeypatch: pytest.MonkeyPatch
) -> TestClient:
    # the operator's models folder: the public form takes paths in it (it need not exist here)
    monkeypatch.setenv("MEDBOARD_MODELS_DIR", "/models")
    app = create_app(database)
    app.state.submit = partial(submit, validate=fake_validate)
    return TestClient(app)


def count(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Submission)) or 0


def test_submit_form(client: TestClient) -> None:
    html = client.get("/submit?track=flowertune_medical").text
    for name in ("model", "track", "dtype", "revision", "adapter", "submitter", "name",
                 "model_type", "weight_type", "description", "protocol"):  # fmt: skip
        assert f'name="{name}"' in html
    assert '<option value="loglik" selected>' in html and '<option value="generative" >' in html
    assert '<option value="flowertune_medical" selected>' in html
    assert '<option value="bfloat16" selected>' in html


def test_a_path_that_does_not_exist_is_refused(client: TestClient, database: Database) -> None:
    """Without a models folder the public form takes no path: the one message for all
    (tests/web/test_queue_public.py has the folder)."""
    response = client.post("/submit", data={"model": "/no/such/model", "dtype": "bfloat16"})
    assert response.status_code == 400
    assert "model: local paths are not taken here" in response.text
    assert 'value="/no/such/model"' in response.text  # the form keeps what was typed
    assert count(database) == 0


def test_submit_queues_and_the_queue_shows_it(queue_client: TestClient, database) -> None:
    response = queue_client.post(
        "/submit",
        data={"model": "/models/good", "track": "open_medical", "dtype": "float16",
              "submitter": "lab", "name": " Good-7B "},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303
    assert response.headers["location"] == "/queue?submitted=1#submission-1"
    page = queue_client.get(response.headers["location"]).text
    assert "Submission #1 is queued." in page and 'id="submission-1"' in page
    assert "/models/good" in page and 'class="status pending"' in page
    assert "<strong>Good-7B</strong>" in page
    jobs = queue_client.get("/api/queue").json()
    assert jobs["counts"] == {"pending": 1, "running": 0, "finished": 0, "failed": 0}
    job = jobs["submissions"][0]
    assert job["name"] == "Good-7B"  # as the board will name the entry (worker tests)
    (row,) = csv.DictReader(io.StringIO(queue_client.get("/queue.csv").text))
    assert (row["model"], row["name"]) == ("/models/good", "Good-7B")
    assert (job["model"], job["dtype"], job["status"], job["revision"], job["parameters"]) == (
        "/models/good", "float16", "pending", "rev-/models/good", 1_000_000_000,
    )  # fmt: skip


def test_duplicates_link_to_the_queued_job_or_the_entry(
    queue_client: TestClient, database: Database, evaluated_id: int
) -> None:
    first = queue_client.post("/api/submit", json={"model": "/models/good"})
    assert first.status_code == 201
    job_id = first.json()["submission"]["id"]
    again = queue_client.post("/submit", data={"model": "/models/good"})
    assert again.status_code == 409
    assert "is submitted already" in again.text
    assert f'href="/queue#submission-{job_id}"' in again.text
    evaluated = queue_client.post(
        "/api/submit", json={"model": "/models/tiny", "revision": "rev123"}
    )
    assert evaluated.status_code == 409
    body = evaluated.json()
    assert body["entry_id"] == evaluated_id and body["link"] == f"/model/{evaluated_id}"
    assert "is on the leaderboard already" in body["detail"]
    html = queue_client.post("/submit", data={"model": "/models/tiny", "revision": "rev123"})
    assert f'href="/model/{evaluated_id}"' in html.text
    assert count(database) == 1


def test_refusals_leave_the_database_unchanged(queue_client: TestClient, database) -> None:
    cases = [
        ({"model": "/models/bad-bert"}, "is not a causal LM"),
        ({"model": ""}, "no model given"),
        ({"model": "/m", "track": "nope"}, "unknown track"),
        ({"model": "/models/m", "dtype": "int3"}, "unknown dtype"),
        ({"model": "/m\x00x"}, "model contains control characters"),
        ({"model": "/m", "submitter": "x" * 201}, "submitter is too long"),
        ({"model": "/" + "m" * 300}, "model is too long (301 characters, at most 300)"),
    ]
    for form, message in cases:
        response = queue_client.post("/submit", data=form)
        assert response.status_code == 400, form
        assert message in response.text, form
        api = queue_client.post("/api/submit", json={"model": "/m", **form})
        assert api.status_code in (400, 422), form
    assert queue_client.post("/api/submit", json={}).status_code == 422
    lone = queue_client.post(
        "/api/submit",
        content=b'{"model": "/m\\ud800"}',
        headers={"content-type": "application/json"},
    )
    assert lone.status_code == 422 and lone.json()["detail"][0]["loc"] == ["body", "model"]
    assert count(database) == 0


def test_markup_in_fields_is_escaped(queue_client: TestClient) -> None:
    evil = "<script>alert('x')</script>"
    refused = queue_client.post("/submit", data={"model": f"bad{evil}"})
    assert evil not in refused.text and "&lt;script&gt;" in refused.text
    queued = queue_client.post(
        "/submit", data={"model": "/models/ok", "submitter": f"{evil}'; DROP TABLE entries;--"}
    )
    assert queued.status_code == 200
    assert evil not in queued.text and "&lt;script&gt;alert(&#39;x&#39;)" in queued.text
    assert queue_client.get("/api/leaderboard/open_medical").json()["entries"] == 6
    exported = queue_client.get("/queue.csv").text
    assert "<script>" in exported  # CSV keeps the text as typed


def test_queue_states_reasons_filter_and_csv(client: TestClient, database: Database) -> None:
    with database.session() as session:
        for status, reason, entry_id in (
            ("pending", None, None),
            ("running", None, None),
            ("finished", None, 1),
            ("failed", "CUDA out of memory while evaluating medqa_4options", None),
        ):
            session.add(
                Submission(model=f"/models/{status}", dtype="bfloat16", track="open_medical",
                           status=status, reason=reason, entry_id=entry_id, worker="w1")
            )  # fmt: skip
    html = client.get("/queue").text
    for status in ("pending", "running", "finished", "failed"):
        assert f'class="status {status}"' in html and f"{status} (1)" in html
    assert "CUDA out of memory while evaluating medqa_4options" in html
    assert 'href="/model/1">entry 1</a>' in html
    failed = client.get("/api/queue?status=failed").json()
    assert [j["model"] for j in failed["submissions"]] == ["/models/failed"]
    assert failed["submissions"][0]["reason"].startswith("CUDA out of memory")
    everything = client.get("/api/queue").json()["submissions"]
    assert [j["status"] for j in everything] == ["failed", "finished", "running", "pending"]
    rows = list(csv.DictReader(io.StringIO(client.get("/queue.csv?status=failed").text)))
    assert len(rows) == 1 and rows[0]["status"] == "failed" and rows[0]["worker"] == "w1"
    assert "No submission is running" not in client.get("/queue?status=running").text
    assert client.get("/queue?status=nope").status_code == 200  # unknown: every state
    unknown = "unknown status 'faild' (choose from pending, running, finished, failed)"
    refused = client.get("/api/queue?status=faild")  # a program's typo is not every state
    assert refused.status_code == 422 and refused.json()["detail"] == unknown
    refused = client.get("/queue.csv?status=faild")
    assert refused.status_code == 422 and unknown.replace("'", "&#39;") in refused.text


def test_the_queue_shows_where_a_job_is(client: TestClient, database: Database) -> None:
    running = {"tasks_done": 1, "tasks": 9, "task": "medmcqa", "done": 1200, "total": 4183,
               "eta_seconds": 372}  # fmt: skip
    stopped = {"tasks_done": 2, "tasks": 9, "task": "pubmedqa", "done": 64, "total": 500,
               "eta_seconds": 90}  # fmt: skip
    loading = {"tasks_done": 0, "tasks": 9, "task": None, "done": 0, "total": 0}
    with database.session() as session:
        for name, status, progress in (
            ("a", "running", running),
            ("b", "failed", stopped),
            ("c", "running", loading),
            ("d", "running", {"tasks": "nine"}),  # nothing readable: nothing shown, no error
        ):
            session.add(
                Submission(model=f"/models/{name}", dtype="bfloat16", track="open_medical",
                           status=status, progress=progress, worker="w1", reason=None)
            )  # fmt: skip
    html = client.get("/queue").text
    assert "task 2 of 9: medmcqa 1,200/4,183" in html
    assert "stopped at task 3 of 9: pubmedqa 64/500" in html
    assert "0 of 9 tasks done" in html
    # the whole job, from the tasks' sizes (a row stored without the job's own numbers): the
    # 1,273 MedQA questions and 1,200 of MedMCQA done, of 7,045
    size = sum(t.expected_size or 0 for t in REGISTRY.resolve("open_medical", None))
    assert size == 7045
    assert f'<progress value="2473" max="{size}"></progress>' in html
    assert "2,473/7,045 questions (35.1%)" in html
    assert "0/7,045 questions (0.0%)" in html  # the model loads
    assert html.count("<progress ") == 2  # the running jobs, not the failed one
    assert "about 6 min left in this task" in html
    assert html.count("left in this task") == 1  # not for the failed job
    assert html.count("estimating…") == 2  # no time left for the job yet: none made up
    jobs = {j["model"]: j for j in client.get("/api/queue").json()["submissions"]}
    assert jobs["/models/a"]["progress"] == running and jobs["/models/d"]["progress"] == {
        "tasks": "nine"
    }
    assert jobs["/models/a"]["job_progress"] == {
        "done": 2473, "total": 7045, "fraction": 0.351, "eta_seconds": None
    }  # fmt: skip
    assert jobs["/models/d"]["job_progress"] is None
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(client.get("/queue.csv").text))}
    assert rows["/models/a"]["progress"] == "task 2 of 9: medmcqa 1,200/4,183"
    assert rows["/models/d"]["progress"] == ""


def test_the_queue_shows_the_whole_jobs_time_left(client: TestClient, database: Database) -> None:
    """A worker stores the job's own numbers: the page and its JSON twin say the same."""
    progress = {"tasks_done": 0, "tasks": 9, "task": "medqa_4options", "done": 300,
                "total": 1273, "eta_seconds": 500, "job_done": 300, "job_total": 7045,
                "job_eta_seconds": 2460}  # fmt: skip
    with database.session() as session:
        session.add(Submission(model="/models/e", dtype="bfloat16", track="open_medical",
                               status="running", progress=progress, worker="w1"))  # fmt: skip
    html = client.get("/queue").text
    assert "300/7,045 questions (4.3%)" in html
    assert '<progress value="300" max="7045"></progress>' in html
    assert "about 41 min left</span>" in html
    assert "about 8 min left in this task" in html
    assert "estimating…" not in html
    job = client.get("/api/queue").json()["submissions"][0]
    assert job["job_progress"] == {
        "done": 300, "total": 7045, "fraction": 0.0426, "eta_seconds": 2460
    }  # fmt: skip


def test_times_read_as_how_long_ago(client: TestClient, database: Database) -> None:
    """Submitted and updated read "3 min ago", the exact UTC time in the <time> element."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with database.session() as session:
        session.add(Submission(model="/models/f", dtype="bfloat16", track="open_medical",
                               created_at=now - timedelta(minutes=3, seconds=5),
                               updated_at=now - timedelta(days=3)))  # fmt: skip
    html = client.get("/queue").text
    created = (now - timedelta(minutes=3, seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f'<time datetime="{created}" title="{created}">3 min ago</time>' in html
    old = (now - timedelta(days=3)).strftime("%Y-%m-%d %H:%M UTC")
    assert f">{old}</time>" in html
    # the twin keeps the exact times
    job = client.get("/api/queue").json()["submissions"][0]
    assert job["created_at"] == (now - timedelta(minutes=3, seconds=5)).isoformat(
        timespec="seconds"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "just now"),
        (42, "42 s ago"),
        (3 * 60 + 59, "3 min ago"),
        (2 * 3600, "2 h ago"),
        (2 * 3600 + 5 * 60, "2 h 5 min ago"),
    ],
)
def test_ago_text(seconds: int, text: str) -> None:
    now = datetime(2026, 3, 12, 14, 5, tzinfo=UTC)
    assert ago_text(now - timedelta(seconds=seconds), now) == text
    assert ago_text((now - timedelta(seconds=seconds)).replace(tzinfo=None), now) == text
    assert ago_text("not a time", now) == ""


def test_openapi_docs_list_every_json_twin(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/leaderboard/{track}",
        "/api/model/{entry_id}",
        "/api/queue",
        "/api/submit",
        "/api/compare",
        "/leaderboard/{track}.csv",
        "/queue.csv",
    ):
        assert path in paths, path
    assert client.get("/docs").status_code == 200


EVIL = "<script>alert('x')</script>'; DROP TABLE entries;--"


@pytest.mark.parametrize(
    "field", ["model", "track", "dtype", "revision", "adapter", "submitter", "name"]
)
def test_markup_and_sql_in_every_field(queue_client: TestClient, database, field: str) -> None:
    form = {"model": "/models/ok", "track": "open_medical", "dtype": "bfloat16", field: EVIL}
    before = count(database)
    for response in (
        queue_client.post("/submit", data=form),
        queue_client.post("/api/submit", json=form),
    ):
        assert response.status_code < 500, response.text
        if response.headers["content-type"].startswith("text/html"):
            assert "<script>alert" not in response.text  # escaped wherever it is echoed
        else:  # JSON carries the text as typed, as data that no browser runs
            assert response.headers["content-type"] == "application/json"
        if response.status_code >= 400:
            assert count(database) == before  # a refusal changes nothing
        before = count(database)
    page = queue_client.get("/queue").text
    assert "<script>alert" not in page
    # the SQL stayed text: every table is still there
    assert queue_client.get("/api/leaderboard/open_medical").json()["entries"] == 6
    assert queue_client.get("/api/queue").status_code == 200


@pytest.mark.parametrize(
    ("progress", "text"),
    [
        ({"eta_seconds": 0}, "under a minute left in this task"),
        ({"eta_seconds": 59}, "under a minute left in this task"),
        ({"eta_seconds": 372}, "about 6 min left in this task"),
        ({"eta_seconds": 2 * 3600 + 5 * 60}, "about 2 h 5 min left in this task"),
        ({"eta_seconds": None}, ""),  # no estimate yet
        ({"eta_seconds": "soon"}, ""),
        ({"eta_seconds": -5}, ""),
        ({}, ""),
        (None, ""),
    ],
)
def test_eta_text(progress: dict | None, text: str) -> None:
    assert eta_text(progress) == text
