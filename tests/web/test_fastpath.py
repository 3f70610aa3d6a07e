"""Rendered leaderboard views answered from memory: same bytes, gzip, ETag, and fresh data."""

import pytest
from fastapi.testclient import TestClient

from medboard.queue.admin import hide
from medboard.results.db import Database
from medboard.web import routes_board
from medboard.web.app import create_app
from medboard.web.fastpath import accepts_gzip
from tests.web.conftest import entry_ids

URLS = ["/api/leaderboard/open_medical", "/leaderboard/open_medical?sort=model&per_page=3"]


@pytest.mark.parametrize("url", URLS)
def test_a_rendered_view_is_answered_without_the_route(
    client: TestClient, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = client.get(url, headers={"Accept-Encoding": "identity"})
    assert first.status_code == 200 and "content-encoding" not in first.headers

    def no_route(*args: object, **kwargs: object) -> None:
        raise AssertionError("the route was called")

    monkeypatch.setattr(routes_board, "_rendered", no_route)
    again = client.get(url, headers={"Accept-Encoding": "identity"})
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["etag"] == first.headers["etag"]


@pytest.mark.parametrize("fast", [False, True])
def test_gzip_etag_and_not_modified(client: TestClient, fast: bool) -> None:
    url = "/api/leaderboard/open_medical"
    if fast:
        client.get(url)  # rendered: the next requests take the fast path
    packed = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "Accept-Encoding"
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert packed.json() == plain.json()
    etag = plain.headers["etag"]
    assert packed.headers["etag"] == etag
    unchanged = client.get(url, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_the_fast_path_never_serves_a_board_an_admin_changed(database: Database) -> None:
    client = TestClient(create_app(database, admin_token="t"))
    token = {"Authorization": "Bearer t"}
    for _ in range(2):
        assert "alpha-7b" in client.get("/leaderboard/open_medical").text
    alpha = entry_ids(database)["alpha-7b"]
    assert client.post(f"/api/admin/entries/{alpha}/hide", headers=token).status_code == 200
    assert "alpha-7b" not in client.get("/leaderboard/open_medical").text


def test_a_change_outside_the_app_shows_within_a_check(database: Database) -> None:
    app = create_app(database)
    app.state.cache.check_seconds = 0.0
    client = TestClient(app)
    assert "alpha-7b" in client.get("/leaderboard/open_medical").text
    hide(database, entry_ids(database)["alpha-7b"])
    assert "alpha-7b" not in client.get("/leaderboard/open_medical").text


def test_accept_encoding() -> None:
    assert accepts_gzip("gzip, deflate, br")
    assert accepts_gzip("br;q=1.0, gzip;q=0.8")
    assert accepts_gzip("*")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("identity")
    assert not accepts_gzip(None)
