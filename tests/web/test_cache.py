"""The leaderboard cache: rebuilt when the database changes, built once under a burst."""

import threading
import time

from medboard.queue.admin import hide
from medboard.web.cache import BoardCache
from tests.web.conftest import entry_ids


def test_a_hidden_entry_changes_the_fingerprint(database) -> None:
    cache = BoardCache(database, check_seconds=0.0)
    before = cache.version()
    assert len(cache.entries("open_medical")) == 5
    hide(database, entry_ids(database)["alpha-7b"])
    assert cache.version() != before
    hidden = [e.model for e in cache.entries("open_medical") if e.hidden]
    assert hidden == ["alpha-7b"]


def test_views_are_kept_until_the_database_changes(database) -> None:
    cache = BoardCache(database, check_seconds=60.0)
    calls = []
    assert cache.view(("k",), lambda: calls.append(1) or "one") == "one"
    assert cache.view(("k",), lambda: calls.append(1) or "two") == "one"
    cache.invalidate()
    assert cache.view(("k",), lambda: calls.append(1) or "three") == "three"
    assert len(calls) == 2


def test_a_burst_of_requests_builds_a_view_once(database) -> None:
    cache = BoardCache(database)
    calls = []

    def build() -> str:
        calls.append(1)
        time.sleep(0.2)
        return "page"

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.view(("burst",), build)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["page"] * 8 and len(calls) == 1
