"""The public form and API never probe the server's files and never download: local paths only
inside the operator's models folder (MEDBOARD_MODELS_DIR), one message for every other path;
a Hub id is queued unchecked and validated by the worker. And the submission metadata (model
type, weight type, description, protocol) from the form, the API and the CLI to the entry."""

import html
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from medboard.queue.public import NOT_ON_HUB, PATH_REFUSED
from medboard.queue.worker import run_worker
from medboard.results.db import Database, Entry, Submission, open_database
from medboard.runner import EvalOptions
from medboard.web.app import create_app
from tests.conftest import build_tiny_llama, import_fixture_tasks
from tests.hub_server import COMMIT, hub_repo, online_hub

TRACK = "flowertune_medical"  # 4 tasks, 10 questions each in the fixtures
OPTIONS = EvalOptions(allow_data_mismatch=True)
REFUSED = PATH_REFUSED.format(field="model")


@pytest.fixture()
def database(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path / 'public.db'}")


@pytest.fixture()
def client(database: Database, medboard_home: Path) -> TestClient:
    import_fixture_tasks(medboard_home)
    return TestClient(create_app(database))


@pytest.fixture()
def models(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The operator's models folder, with a model in it and a symlink out of it; a model
    outside it."""
    folder = tmp_path / "models"
    shutil.copytree(tiny_model, folder / "tiny")
    shutil.copytree(tiny_model, tmp_path / "outside" / "tiny")
    (folder / "escape").symlink_to(tmp_path / "outside" / "tiny")
    monkeypatch.setenv("MEDBOARD_MODELS_DIR", str(folder))
    return folder


def count(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Submission)) or 0


def test_every_path_outside_the_models_folder_gets_one_message(
    client: TestClient, database: Database, models: Path, tmp_path: Path
) -> None:
    refused = [
        str(tmp_path / "outside" / "tiny"),  # a model that exists
        str(tmp_path / "outside" / "none"),  # nothing there
        "/etc",
        "/root/.ssh",
        "/no/such/model",
        str(models / ".." / "outside" / "tiny"),  # out by ..
        "../outside/tiny",  # relative to the folder, out by ..
        str(models / "escape"),  # out by a symlink
        "~/tiny",
        "tiny/../../outside/tiny",
    ]
    for model in refused:
        response = client.post("/api/submit", json={"model": model, "dtype": "float32"})
        assert (response.status_code, response.json()) == (400, {"detail": REFUSED}), model
        page = client.post("/submit", data={"model": model, "dtype": "float32"})
        assert page.status_code == 400 and REFUSED in html.unescape(page.text)
    for adapter in (str(tmp_path / "outside" / "tiny"), "/no/such/adapter", "/etc"):
        response = client.post(
            "/api/submit", json={"model": str(models / "tiny"), "adapter": adapter}
        )
        detail = PATH_REFUSED.format(field="adapter")
        assert (response.status_code, response.json()) == (400, {"detail": detail}), adapter
    assert count(database) == 0


def test_a_path_inside_the_models_folder_is_checked_and_queued(
    client: TestClient, database: Database, models: Path
) -> None:
    response = client.post("/api/submit", json={"model": str(models / "tiny"), "dtype": "float32"})
    assert response.status_code == 201, response.text
    job = response.json()["submission"]
    assert job["model"] == str(models / "tiny") and job["revision"].startswith("sha256:")
    # relative to the folder; and the folder's own messages for what is in it
    relative = client.post("/api/submit", json={"model": "tiny", "dtype": "float16"})
    assert relative.status_code == 201 and relative.json()["submission"]["model"] == job["model"]
    missing = client.post("/api/submit", json={"model": str(models / "none")})
    assert missing.status_code == 400 and "does not exist" in missing.json()["detail"]
    assert count(database) == 2


def test_without_a_models_folder_every_path_is_refused(
    client: TestClient, database: Database, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDBOARD_MODELS_DIR", raising=False)
    for model in (str(tiny_model), "/no/such/model", "/etc"):
        response = client.post("/api/submit", json={"model": model})
        assert (response.status_code, response.json()) == (400, {"detail": REFUSED})
    assert count(database) == 0


def test_a_hub_id_is_queued_without_a_download_and_checked_by_the_worker(
    client: TestClient,
    database: Database,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request contacts no Hub; the worker fetches the model from the Hub (a local stand-in,
    huggingface_hub's real client), and refuses one over the board's size cap
    (MEDBOARD_PUBLIC_MAX_PARAMS) before its weights are downloaded."""
    monkeypatch.setenv("MEDBOARD_PUBLIC_MAX_PARAMS", "50K")  # tiny: 44.2K, big: 125K
    with online_hub(tmp_path, monkeypatch) as hub:
        hub_repo(hub.root, tiny_model, "org/tiny")
        hub_repo(hub.root, build_tiny_llama(tmp_path / "big", hidden=64), "org/big")
        monkeypatch.chdir(tmp_path)
        (tmp_path / "org" / "local").mkdir(parents=True)  # a worker's path that looks like an id
        for model in ("org/tiny", "org/missing", "org/local", "org/big"):
            response = client.post(
                "/api/submit", json={"model": model, "dtype": "float32", "track": TRACK}
            )
            assert response.status_code == 201, response.text
            assert response.json()["submission"]["status"] == "pending"
        assert hub.requests == []  # nothing looked up in a request
        assert run_worker(database, "w", once=True, options=OPTIONS) == 4
        with database.session() as session:
            jobs = {j.model: j for j in session.scalars(select(Submission)).all()}
            done = jobs["org/tiny"]
            assert done.status == "finished", done.reason
            assert done.revision == COMMIT and done.info["kind"] == "hub"
            assert done.info["license"] == "apache-2.0"
            assert session.get(Entry, done.entry_id).model.revision == COMMIT
            # one message whether the id names nothing on the Hub or a path on the worker's disk
            for model in ("org/missing", "org/local"):
                assert (jobs[model].status, jobs[model].reason) == (
                    "failed", NOT_ON_HUB.format(model=model)
                )  # fmt: skip
            assert (jobs["org/big"].status, jobs["org/big"].reason) == (
                "failed",
                "org/big cannot be evaluated: org/big has 125K parameters, more than the 50K "
                "allowed here",
            )
        assert not any("org/local" in path for _, path, _ in hub.requests)  # a path here
        big = f"/org/big/resolve/{COMMIT}/model.safetensors"
        weights = [r for method, path, r in hub.requests if method == "GET" and path == big]
        assert weights and all(r.startswith("bytes=0-") for r in weights)  # its header only
        assert hub.downloaded("pytorch_model.bin") == []  # tiny's copy of its weights


def test_a_hub_that_is_down_makes_jobs_wait_not_fail(
    client: TestClient,
    database: Database,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the Hub answers 503, a public Hub id (validated by the worker) and an operator's
    Hub model (fetched again when evaluated) wait in the queue to be tried again, instead of
    failing as "not on the Hub"; when it is back, the operator's rerun lets them go and they
    finish."""
    from medboard.queue.admin import rerun
    from medboard.queue.submissions import SubmitRequest, submit

    with online_hub(tmp_path, monkeypatch) as hub:
        hub_repo(hub.root, tiny_model, "org/tiny")
        public = client.post(
            "/api/submit", json={"model": "org/tiny", "dtype": "float32", "track": TRACK}
        )
        assert public.status_code == 201, public.text
        submit(database, SubmitRequest("org/tiny", track=TRACK, dtype="bfloat16"))
        hub.busy = 503
        assert run_worker(database, "w", once=True, options=OPTIONS) == 2
        jobs = client.get("/api/queue").json()["submissions"]
        assert [(j["model"], j["status"], j["retries"]) for j in jobs] == [
            ("org/tiny", "pending", 1), ("org/tiny", "pending", 1)
        ]  # fmt: skip
        for job in jobs:
            assert job["retry_at"] is not None
            assert "(1 of 5): cannot get model org/tiny from the Hub now (503)" in job["reason"]
        assert "(waiting to try again)" in client.get("/queue").text
        assert run_worker(database, "w2", once=True, options=OPTIONS) == 0  # not before then
        hub.busy = None
        for job in jobs:
            rerun(database, job["id"])
        assert run_worker(database, "w", once=True, options=OPTIONS) == 2
    with database.session() as session:
        done = session.scalars(select(Submission)).all()
        assert [(j.status, j.revision) for j in done] == [("finished", COMMIT)] * 2


def _entry_of(database: Database, model: str) -> tuple[Submission, Entry]:
    run_worker(database, "w", once=True, options=OPTIONS)
    with database.session() as session:
        job = session.scalars(select(Submission).where(Submission.model == model)).one()
        assert job.status == "finished", job.reason
        entry = session.get(Entry, job.entry_id)
        assert entry is not None
        entry.model  # noqa: B018 - loaded while the session is open
        return job, entry


@pytest.fixture()
def fake_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """A board whose operator lets the public submit the fake test model (the tests' quick
    one), as MEDBOARD_PUBLIC_BACKENDS lets any board choose its backends."""
    monkeypatch.setenv("MEDBOARD_PUBLIC_BACKENDS", "hf,fake")


def test_the_test_model_is_the_operators_unless_the_board_lists_it(
    client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch, tiny_model: Path
) -> None:
    """The fake model was submittable from the form and the API: its entries (an always-A
    baseline ...) ranked on a public board beside real models. Now only the backends the
    operator lists, by default all but the fake one; the operator's medboard submit is
    unchanged."""
    from medboard.cli import app

    refused = (
        "fake: models are not taken from a public submission here (this board takes hf:, "
        "openai:; its operator sets MEDBOARD_PUBLIC_BACKENDS, and may queue any model with "
        "medboard submit)"
    )
    for model in ("fake:bias=A", "fake:"):
        answer = client.post("/api/submit", json={"model": model, "track": TRACK})
        assert (answer.status_code, answer.json()["detail"]) == (400, refused), model
        page = client.post("/submit", data={"model": model, "track": TRACK})
        assert page.status_code == 400 and refused in html.unescape(page.text)
    unknown = client.post("/api/submit", json={"model": "nosuch:model", "track": TRACK})
    assert unknown.status_code == 400 and "unknown backend 'nosuch'" in unknown.json()["detail"]
    assert count(database) == 0
    # a board of served models only: no transformers model, by Hub id or by path
    monkeypatch.setenv("MEDBOARD_PUBLIC_BACKENDS", "openai")
    for model in ("org/model", "hf:org/model"):
        answer = client.post("/api/submit", json={"model": model, "track": TRACK})
        assert answer.status_code == 400, model
        assert answer.json()["detail"].startswith("hf: models are not taken from a public ")
    assert count(database) == 0
    operator = CliRunner().invoke(
        app, ["submit", "fake:bias=A", "--track", TRACK, "--db", database.url]
    )
    assert operator.exit_code == 0, operator.output
    monkeypatch.setenv("MEDBOARD_PUBLIC_BACKENDS", "hf, fake")
    answer = client.post("/api/submit", json={"model": "fake:bias=B", "track": TRACK})
    assert answer.status_code == 201, answer.text
    assert count(database) == 2


@pytest.mark.usefixtures("fake_public")
def test_metadata_from_the_form_reaches_the_entry(client: TestClient, database: Database) -> None:
    form = {
        "model": "fake:bias=A", "track": TRACK, "model_type": "fine-tuned",
        "weight_type": "original", "description": "A tuned model, one line.",
        "protocol": "generative",
    }  # fmt: skip
    assert client.post("/submit", data=form, follow_redirects=False).status_code == 303
    job, entry = _entry_of(database, "fake:bias=A")
    metadata = (job.model_type, job.weight_type, job.protocol)
    assert metadata == ("fine-tuned", "original", "generative")
    assert entry.model.model_type == "fine-tuned"
    assert entry.extra == {
        "protocol": "generative/1", "weight_type": "original",
        "description": "A tuned model, one line.",
    }  # fmt: skip
    assert "A tuned model, one line." in html.unescape(client.get("/queue").text)


@pytest.mark.usefixtures("fake_public")
def test_metadata_from_the_api_reaches_the_entry(client: TestClient, database: Database) -> None:
    body = {"model": "fake:bias=B", "track": TRACK, "model_type": "instruct"}
    response = client.post("/api/submit", json=body)
    assert response.status_code == 201
    data = response.json()["submission"]
    assert (data["model_type"], data["weight_type"], data["protocol"]) == (
        "instruct", "original", "loglik",
    )  # fmt: skip
    _, entry = _entry_of(database, "fake:bias=B")
    assert entry.model.model_type == "instruct"
    assert entry.extra == {"protocol": "loglik/1", "weight_type": "original", "description": ""}


def test_metadata_from_the_cli_reaches_the_entry(database: Database, medboard_home: Path) -> None:
    from medboard.cli import app

    import_fixture_tasks(medboard_home)
    result = CliRunner().invoke(
        app,
        ["submit", "fake:bias=C", "--track", TRACK, "--model-type", "pretrained",
         "--description", "from the command line", "--protocol", "generative",
         "--db", database.url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job, entry = _entry_of(database, "fake:bias=C")
    assert entry.model.model_type == "pretrained"
    assert entry.extra["protocol"] == "generative/1"
    assert entry.extra["description"] == "from the command line"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model_type": "alien"}, "unknown model type 'alien'"),
        ({"weight_type": "merged"}, "unknown weight type 'merged'"),
        ({"weight_type": "delta"}, "cannot add delta weights"),
        ({"weight_type": "adapter"}, "weight type adapter needs the adapter"),
        ({"protocol": "flowertune"}, "unknown protocol 'flowertune'"),
        ({"description": "two\nlines"}, "description contains control characters"),
        ({"description": "x" * 501}, "description is too long"),
    ],
)
def test_bad_metadata_is_one_line_and_queues_nothing(
    client: TestClient, database: Database, body: dict[str, str], message: str
) -> None:
    response = client.post("/api/submit", json={"model": "fake:bias=D", **body})
    if response.status_code == 422:  # pydantic's own length limit
        assert "description" in str(response.json()["detail"])
    else:
        assert response.status_code == 400 and message in response.json()["detail"]
        page = client.post("/submit", data={"model": "fake:bias=D", **body})
        assert page.status_code == 400 and message in html.unescape(page.text)
    assert count(database) == 0


def test_a_public_submission_cannot_name_a_variable_of_the_servers_environment(
    client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-M api_key_env=VAR` from the API or the form sent the value of any variable of the
    server's environment (its admin token) as a bearer token to the base_url the submitter
    chose, while the submission was validated. Now refused before any request; the operator's
    `medboard submit` still takes it."""
    from medboard.cli import app
    from tests.backends.openai_stub import StubServer

    monkeypatch.setenv("MEDBOARD_ADMIN_TOKEN", "s3cret-admin-token")
    monkeypatch.setenv("MEDBOARD_PUBLIC_SERVERS", "http://127.0.0.1")
    server = StubServer().start()
    try:
        leak = f"base_url={server.url},api_key_env=MEDBOARD_ADMIN_TOKEN"
        message = (
            "api_key_env is not taken from a public submission: the board's operator sets it "
            "(medboard submit, or medboard worker -M api_key_env=... for the jobs a worker runs)"
        )
        answer = client.post("/api/submit", json={"model": "openai:stub", "args": leak})
        assert (answer.status_code, answer.json()["detail"]) == (400, message)
        form = client.post("/submit", data={"model": "openai:stub", "args": leak})
        assert form.status_code == 400 and message in html.unescape(form.text)
        assert server.requests == [] and count(database) == 0
        # without it the same model is checked against its server and queued
        plain = client.post(
            "/api/submit", json={"model": "openai:stub", "args": leak.split(",")[0]}
        )
        assert plain.status_code == 201, plain.text
        assert [path for path, _ in server.requests][:1] == ["/v1/models"]
        operator = CliRunner().invoke(
            app, ["submit", "openai:stub", "-M", leak.split(",")[0], "-M",
                  "api_key_env=MEDBOARD_ADMIN_TOKEN", "--track", TRACK,
                  "--db", database.url],
        )  # fmt: skip
        assert operator.exit_code == 0, operator.output
        assert count(database) == 2
    finally:
        server.stop()


def test_a_public_submission_names_only_the_operators_servers(
    client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any base_url was taken from the public: the server, and then its workers, sent requests
    wherever a submission said (into the operator's network) and the refusal showed what came
    back (the served names, 80 characters of a page that is not JSON, 300 of an error)."""
    from medboard.queue.public import public_server
    from tests.backends.openai_stub import StubServer

    server = StubServer().start()
    try:
        body = {"model": "openai:stub", "args": f"base_url={server.url}"}
        monkeypatch.delenv("MEDBOARD_PUBLIC_SERVERS", raising=False)
        answer = client.post("/api/submit", json=body)
        assert (answer.status_code, answer.json()["detail"]) == (400, (
            "base_url: a public submission may name only the servers the board's operator "
            "lists in MEDBOARD_PUBLIC_SERVERS (none are)"
        ))  # fmt: skip
        monkeypatch.setenv("MEDBOARD_PUBLIC_SERVERS", "http://10.0.0.7:8000, https://api.x.org")
        answer = client.post("/api/submit", json=body)
        assert answer.status_code == 400 and answer.json()["detail"].endswith(
            "(http://10.0.0.7:8000, https://api.x.org)"
        )
        assert server.requests == [] and count(database) == 0
        monkeypatch.setenv("MEDBOARD_PUBLIC_SERVERS", f"http://127.0.0.1:{server.port}")
        assert client.post("/api/submit", json=body).status_code == 201
        assert count(database) == 1
    finally:
        server.stop()
    monkeypatch.setenv("MEDBOARD_PUBLIC_SERVERS", "http://gpu-1:8001,https://API.x.org/")
    allowed = [
        "http://gpu-1:8001/v1",
        "gpu-1:8001",
        "https://api.x.org/v1",
        "https://api.x.org:443",
    ]
    refused = [
        "http://gpu-1:8002/v1", "https://gpu-1:8001/v1", "http://gpu-1/v1", "http://gpu-10:8001",
        "http://api.x.org/v1", "http://gpu-1:8001@evil.org/v1", "http://evil.org/gpu-1:8001",
        "http://gpu-1:port/v1", "",
    ]  # fmt: skip
    assert [u for u in allowed if not public_server(u)] == []
    assert [u for u in refused if public_server(u)] == []


def test_a_public_submission_leaves_how_a_job_runs_to_the_operator(
    client: TestClient, database: Database, models: Path
) -> None:
    """A public submission set the worker's per-run arguments: `batch_tokens=1000000000` asks
    for a whole task in one forward pass (out of the worker's memory for a large model),
    `concurrency=10000` would flood the operator's model server. Each is refused with one line
    naming it (also beside one that names the model, a revision), nothing queued; the model
    without them is queued, and the operator's `medboard submit` still sets how it runs."""
    from medboard.cli import app

    refused = [
        ("tiny", "batch_tokens=1000000000"),
        ("tiny", "revision=main,device=cuda:7"),
        ("tiny", "compile=off"),
        ("openai:stub", "concurrency=10000"),
        ("org/model", "attention=torch"),
    ]
    for model, args in refused:
        key = args.split(",")[-1].split("=")[0]
        message = (
            f"{key} is not taken from a public submission: the board's operator sets it "
            f"(medboard submit, or medboard worker -M {key}=... for the jobs a worker runs)"
        )
        answer = client.post("/api/submit", json={"model": model, "dtype": "float32", "args": args})
        assert (answer.status_code, answer.json()["detail"]) == (400, message), (model, args)
        form = client.post("/submit", data={"model": model, "dtype": "float32", "args": args})
        assert form.status_code == 400 and message in html.unescape(form.text), (model, args)
    assert count(database) == 0
    named = client.post("/api/submit", json={"model": "tiny", "dtype": "float32", "args": ""})
    assert named.status_code == 201, named.text
    operator = CliRunner().invoke(
        app, ["submit", str(models / "tiny"), "-M", "batch_tokens=512", "--track", TRACK,
              "--dtype", "bfloat16", "--db", database.url],
    )  # fmt: skip
    assert operator.exit_code == 0, operator.output
    with database.session() as session:
        jobs = session.scalars(select(Submission).order_by(Submission.id)).all()
        assert [job.args for job in jobs] == [None, {"batch_tokens": 512}]
