"""The public rate limit on a real `medboard serve` behind a reverse proxy: a client is counted
by the address the proxy forwards (uvicorn trusts X-Forwarded-For from 127.0.0.1), whatever
submitter it names, and an empty submitter is no way around it."""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import import_fixture_tasks
from tests.servers import medboard_serve


@pytest.fixture()
def board(medboard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MEDBOARD_SUBMIT_LIMIT", "2")
    import_fixture_tasks(medboard_home)
    yield from medboard_serve(medboard_home, tmp_path, ["--workers", "0"])


def _submit(board: str, model: str, client: str, submitter: str = "") -> tuple[int, str]:
    body = json.dumps({"model": model, "submitter": submitter}).encode()
    request = urllib.request.Request(
        f"{board}/api/submit", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-Forwarded-For": client},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["detail"]


def test_a_client_behind_the_proxy_is_counted_by_its_address(board: str) -> None:
    refused = (400, "rate limit: 2 submissions from your address in the last hour (at most 2); "
               "try again later")  # fmt: skip
    assert _submit(board, "org/model-1", "203.0.113.5") == (201, "")
    assert _submit(board, "org/model-2", "203.0.113.5", submitter="alice") == (201, "")
    assert _submit(board, "org/model-3", "203.0.113.5") == refused
    assert _submit(board, "org/model-3", "203.0.113.5", submitter="mallory") == refused
    assert _submit(board, "org/model-3", "198.51.100.7") == (201, "")  # another client
    # one IPv6 client, two addresses of its /64
    assert _submit(board, "org/model-4", "2001:db8:0:1::1") == (201, "")
    assert _submit(board, "org/model-5", "2001:db8:0:1::2") == (201, "")
    assert _submit(board, "org/model-6", "2001:db8:0:1:ab::3") == refused
