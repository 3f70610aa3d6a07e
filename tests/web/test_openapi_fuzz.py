"""Schemathesis against the app's own OpenAPI spec: no operation answers with a server error.

The app runs in-process (ASGI) on the small SQLite leaderboard of conftest.py, with an admin
token (sent to the admin operations, so their actions run too) and a submit that checks models
without loading them. Every operation gets valid and invalid input (schemathesis' positive and
negative modes); half the valid entry ids are mapped onto entries that exist, so the model pages
and run downloads are reached too. Bounded so the whole file takes well under a minute:
MAX_EXAMPLES per operation and mode, no shrinking of failures, no deadline (one slow example is
not a failure here), the same examples on every run (derandomized).
"""

from functools import partial

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from medboard.queue.submissions import submit
from medboard.results.db import Database
from medboard.web.app import create_app
from tests.web.conftest import entry_ids
from tests.web.test_queue import fake_validate

TOKEN = "fuzz-admin-token"
MAX_EXAMPLES = 25


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
