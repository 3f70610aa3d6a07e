"""Schemathesis against the app's own OpenAPI spec: no operation answers with a server error.

The app runs in-process (ASGI) on the small SQLite leaderboard of conftest.py, with an admin
token (sent to the admin operations, so their actions run too) and a submit that checks models
without loading them. Every operation gets valid and invalid input (schemathesis' positive and
negative modes); half the valid entry ids are mapped onto entries that exist, so the model pages
and run downloads are reached too. Bounded:
MAX_EXAMPLES per operation and mode, no shrinking of failures, no deadline (one slow example is
not a failure here), the same examples on every run (derandomized).

A second pass, on the app with the model check it ships with (a models folder where the public
may name local models, the Hub offline), draws every string of a case (path, query, body, form
fields) from ODD_TEXT: names with a path component over 255 bytes, NUL and control characters,
lone surrogates (in JSON bodies, the only place a client can send them as text). Bytes that are
not UTF-8 cannot be a generated string: `test_odd_bytes_reach_no_route_as_a_server_error` sends
them raw to every operation of the schema (query strings, path segments, form and JSON bodies),
and `test_the_submit_routes_with_the_real_model_check` to the submit routes. The file takes
about a minute and a half on one core.
"""

import json
import shutil
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import hypothesis.strategies as st
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import func, select

from medboard.queue.submissions import submit
from medboard.results.db import Database, Submission
from medboard.web.app import create_app
from tests.web.conftest import entry_ids
from tests.web.test_queue import fake_validate

TOKEN = "fuzz-admin-token"
MAX_EXAMPLES = 25
LONG = "m" * 256  # a path component one byte over what a file name can be (ENAMETOOLONG)
# Strings a client can send as text; a JSON body can carry lone surrogates too.
ODD_TEXT = [
    LONG,
    "é" * 128,  # 256 bytes
    f"/tmp/{LONG}",
    f"org/{'m' * 290}",  # within the model field's 300 characters
    f"/tmp/{'é' * 140}",  # 145 characters, 285 bytes
    f"{LONG}.gguf",
    "a\x00b",
    "\x00",
    "line\nbreak",
    "\x1b[31mred",
    "\x7f\x08\t",
    "~no-such-user/model",
    "../" * 30 + "etc/passwd",
    "hf:" + LONG,
    "",
]
SURROGATES = ["\ud800", "a\udfffb"]
# Raw bytes, as a query string or form value carries them (percent-encoded, or not at all).
ODD_ENCODED = [
    "%FF",  # not UTF-8
    "%C3%28",  # a broken two-byte sequence
    "%ED%A0%80",  # a surrogate, UTF-8-encoded (not valid UTF-8)
    "%00",
    "%1B%5B31m",
    quote(f"/tmp/{LONG}", safe=""),
    quote(f"org/{'m' * 290}", safe=""),
]
ODD_RAW = [b"\xff\xfe", b"a\x00b", b"\xed\xa0\x80", f"/tmp/{LONG}".encode()]


@pytest.fixture()
def fuzzed_app(database: Database, evaluated_id: int) -> FastAPI:
    app = create_app(database, admin_token=TOKEN)
    app.state.submit = partial(submit, validate=fake_validate)
    return app


@pytest.fixture()
def api_schema(fuzzed_app: FastAPI) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_with_a_server_error(
    case: schemathesis.Case, database: Database, evaluated_id: int
) -> None:
    entry_id = (case.path_parameters or {}).get("entry_id")
    if isinstance(entry_id, int) and 0 < entry_id < 2**31 and entry_id % 2 == 0:
        # half the valid ids point at an entry that exists (random ones hardly ever do); the
        # run downloads at the evaluated entry, the only one with runs
        known = sorted(entry_ids(database).values()) or [evaluated_id]
        chosen = evaluated_id if "/runs/" in case.path else known[entry_id // 2 % len(known)]
        case.path_parameters["entry_id"] = chosen
    headers = {"Authorization": f"Bearer {TOKEN}"} if case.path.startswith("/api/admin") else {}
    response = case.call_and_validate(checks=[not_a_server_error], headers=headers)
    if response.status_code == 405:  # schemathesis tries other methods too: say which work
        assert response.headers.get("allow"), case.method


@pytest.fixture()
def models_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short models folder (MEDBOARD_MODELS_DIR, where the public may name local models), so
    that a 256-byte name in it stays within the model field's 300 characters."""
    folder = Path(tempfile.mkdtemp(prefix="mb", dir="/tmp"))
    monkeypatch.setenv("MEDBOARD_MODELS_DIR", str(folder))
    yield folder
    shutil.rmtree(folder)


@pytest.fixture()
def odd_api_schema(
    database: Database, evaluated_id: int, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> schemathesis.schemas.BaseSchema:
    """The schema of the app with the model check it ships with (a models folder to name local
    models in, the Hub offline), each generated case's strings replaced by odd text."""
    _hub_offline(monkeypatch)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(database, TOKEN))
    schema.hooks.register_hook_with_name(_odd_case, "flatmap_case")
    return schema


def _odd_case(context: Any, case: schemathesis.Case) -> st.SearchStrategy:
    """Every string the case holds (path parameters, query, body fields) drawn from ODD_TEXT;
    surrogates only in a JSON body (a client cannot encode them in a URL or a form)."""
    json_body = isinstance(case.body, dict) and "json" in (case.media_type or "")
    texts = ODD_TEXT + SURROGATES if json_body else ODD_TEXT
    places: list[tuple[str, str]] = []
    for container in ("path_parameters", "query"):
        values = getattr(case, container) or {}
        places += [(container, key) for key, value in values.items() if isinstance(value, str)]
    if isinstance(case.body, dict):
        places += [("body", key) for key, value in case.body.items() if isinstance(value, str)]
    if not places:
        return st.just(case)

    def replaced(chosen: list[str]) -> schemathesis.Case:
        for (container, key), text in zip(places, chosen, strict=True):
            if container == "path_parameters" and key == "track" and text.startswith("/"):
                text = text.lstrip("/")  # a slash in a path parameter is another route
            getattr(case, container)[key] = text
        return case

    return st.lists(st.sampled_from(texts), min_size=len(places), max_size=len(places)).map(
        replaced
    )


odd_schema = schemathesis.pytest.from_fixture("odd_api_schema")


@odd_schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_odd_text_reaches_no_operation_as_a_server_error(case: schemathesis.Case) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"} if case.path.startswith("/api/admin") else {}
    case.call_and_validate(checks=[not_a_server_error], headers=headers)


def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation in the app's OpenAPI schema."""
    return [
        (method.upper(), path, operation)
        for path, methods in app.openapi()["paths"].items()
        for method, operation in methods.items()
    ]


def _filled(path: str, operation: dict[str, Any], entry_id: int, odd: str | None = None) -> str:
    """The path with valid parameters (an entry that exists, a real track and task), or `odd`
    (raw, percent-encoded) in its string parameters."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        name = parameter["name"]
        is_int = parameter.get("schema", {}).get("type") == "integer"
        value = str(entry_id) if is_int else odd or {"track": "open_medical"}.get(name, "medqa")
        path = path.replace("{" + name + "}", value)
    return path


def _requests(app: FastAPI, entry_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, url, httpx request arguments): every odd value in every place of every
    operation: each query parameter, each string path parameter, each form or JSON field."""
    found = []
    for method, path, operation in _operations(app):
        queries = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
        strings = [p for p in operation.get("parameters", []) if p["in"] == "path"]
        body = operation.get("requestBody", {}).get("content", {})
        plain = _filled(path, operation, entry_id)
        for odd in ODD_ENCODED:
            found += [(method, f"{plain}?{name}={odd}", {}) for name in queries]
            if any(p.get("schema", {}).get("type") != "integer" for p in strings):
                found.append((method, _filled(path, operation, entry_id, odd), {}))
        for media, content in body.items():
            fields = list(_schema_properties(app, content.get("schema", {})))
            for name in fields:
                if "form" in media:
                    form = "application/x-www-form-urlencoded"
                    found += [
                        (method, plain, {"content": f"{name}={odd}".encode(), "media": form})
                        for odd in ODD_ENCODED
                    ]
                    found += [
                        (method, plain, {"content": name.encode() + b"=" + raw, "media": form})
                        for raw in ODD_RAW
                    ]
                else:
                    found += [
                        (method, plain, {"content": b'{"model": "m", "%s": "' % name.encode()
                                         + raw + b'"}', "media": media})
                        for raw in [*ODD_RAW, b"\\ud800", b"\\u0000"]
                    ]  # fmt: skip
    return found


def _schema_properties(app: FastAPI, schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = app.openapi()["components"]["schemas"][name]
    return schema.get("properties", {})


def test_odd_bytes_reach_no_route_as_a_server_error(
    fuzzed_app: FastAPI, database: Database, evaluated_id: int
) -> None:
    client = TestClient(fuzzed_app, raise_server_exceptions=False)
    token = {"Authorization": f"Bearer {TOKEN}"}
    requests = _requests(fuzzed_app, evaluated_id)
    assert len(requests) > 300  # every operation, every place (a schema change keeps it so)
    assert any("/submit" in url and "form" in args.get("media", "") for _, url, args in requests)
    failures = []
    for method, url, args in requests:
        headers = {**token, **({"Content-Type": args["media"]} if "media" in args else {})}
        response = client.request(method, url, content=args.get("content"), headers=headers)
        if response.status_code >= 500:
            failures.append(f"{method} {url} {args.get('content')!r}: {response.status_code}")
    assert not failures, "\n".join(failures[:20])


def _count(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Submission)) or 0


@pytest.fixture()
def real_check_client(
    database: Database, evaluated_id: int, monkeypatch: pytest.MonkeyPatch
) -> TestClient:
    """The app with the submit it ships with: the transformers backend checks the model (no
    network: a Hub id fails at once)."""
    _hub_offline(monkeypatch)
    return TestClient(create_app(database), raise_server_exceptions=False)


def _hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("name", [LONG, f"org/{LONG}", f"{LONG}.gguf", "é" * 128])
def test_a_long_model_name_is_a_400_with_one_line(
    real_check_client: TestClient, database: Database, models_dir: Path, name: str
) -> None:
    """Was a 500 (OSError ENAMETOOLONG from Path.is_dir() in backends/hf_loading.py): through
    the API and the form, as a model and as an adapter, a name with a component over 255 bytes
    is a 400 with one line, and nothing is queued."""
    before = _count(database)
    for model in (name, str(models_dir / name)):
        response = real_check_client.post("/api/submit", json={"model": model})
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert "\n" not in detail and "longer than 255 bytes" in detail, detail
        form = real_check_client.post("/submit", data={"model": model})
        assert form.status_code == 400 and "longer than 255 bytes" in form.text
        assert "Traceback" not in form.text
    (models_dir / "base").mkdir()
    adapter = {"model": str(models_dir / "base"), "adapter": str(models_dir / name)}
    response = real_check_client.post("/api/submit", json=adapter)
    assert response.status_code == 400 and "\n" not in response.json()["detail"], response.text
    assert _count(database) == before  # nothing queued


@pytest.mark.parametrize("field", ["model", "adapter", "revision", "args", "name", "submitter"])
def test_the_submit_routes_with_the_real_model_check(
    real_check_client: TestClient, database: Database, field: str
) -> None:
    before = _count(database)
    for raw in [*ODD_RAW, *(odd.encode() for odd in ODD_ENCODED)]:
        body = b"model=%2Ftmp%2Fnowhere&" + field.encode() + b"=" + raw
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        response = real_check_client.post("/submit", content=body, headers=form)
        assert 400 <= response.status_code < 500, (raw, response.status_code)
        text = json.dumps({"model": "/tmp/nowhere", field: "X"}).encode().replace(b"X", raw)
        answer = real_check_client.post(
            "/api/submit", content=text, headers={"Content-Type": "application/json"}
        )
        assert 400 <= answer.status_code < 500, (raw, answer.status_code, answer.text)
    assert _count(database) == before


# What the fuzzing found, pinned down.


def test_admin_ids_beyond_32_bits_are_not_found(fuzzed_app: FastAPI) -> None:
    client = TestClient(fuzzed_app)
    token = {"Authorization": f"Bearer {TOKEN}"}
    huge = 6021317420973596514189312  # was a 500: SQLite cannot compare such an integer
    for method, path in (
        ("POST", f"/api/admin/entries/{huge}/hide"),
        ("DELETE", f"/api/admin/entries/{huge}"),
        ("POST", f"/api/admin/submissions/{huge}/approve"),
        ("POST", f"/api/admin/submissions/{2**31}/rerun"),
    ):
        response = client.request(method, path, headers=token)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["detail"].startswith("not found")


def test_a_wrong_method_says_which_methods_work(client: TestClient) -> None:
    for path in ("/api/queue", "/queue", "/leaderboard/open_medical"):
        response = client.request("TRACE", path)
        assert response.status_code == 405 and response.headers["allow"] == "GET", path
