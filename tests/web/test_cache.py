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


def _set_hidden(database, hidden: dict[int, bool]) -> None:
    from sqlalchemy import update

    from medboard.results.db import Entry

    with database.session() as session:
        for entry_id, value in hidden.items():
            session.execute(update(Entry).where(Entry.id == entry_id).values(hidden=value))


def test_a_change_the_fingerprint_misses_shows_after_max_age(database) -> None:
    ids = entry_ids(database)
    _set_hidden(database, {ids["alpha-7b"]: True})
    cache = BoardCache(database, check_seconds=0.0, max_age_seconds=0.3)
    builds = []
    assert [e.model for e in cache.entries("open_medical") if e.hidden] == ["alpha-7b"]
    assert cache.view(("k",), lambda: builds.append(1) or "one") == "one"
    time.sleep(0.35)  # past max_age, nothing changed: the view stays
    assert cache.view(("k",), lambda: builds.append(1) or "two") == "one"
    before = cache.version()
    # one entry shown, another hidden: the same counts, so the same fingerprint
    _set_hidden(database, {ids["alpha-7b"]: False, ids["beta-1.5b"]: True})
    assert cache.version() == before
    hidden = [e.model for e in cache.entries("open_medical") if e.hidden]
    assert hidden == ["alpha-7b"]  # not seen yet
    time.sleep(0.35)
    hidden = [e.model for e in cache.entries("open_medical") if e.hidden]
    assert hidden == ["beta-1.5b"]
    assert cache.view(("k",), lambda: builds.append(1) or "three") == "three"
    assert len(builds) == 2


def test_peek_answers_while_one_background_thread_checks(database) -> None:
    cache = BoardCache(database, check_seconds=0.3)
    cache.remember(("url",), "page", cache.generation())
    assert cache.peek(("url",)) == "page"  # fresh
    hide(database, entry_ids(database)["alpha-7b"])
    time.sleep(0.35)  # a check is due: still answered, and checked in the background
    assert cache.peek(("url",)) == "page"
    deadline = time.monotonic() + 5
    while cache.peek(("url",)) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.peek(("url",)) is None  # the check saw the change and dropped the view
    cache.remember(("url",), "new page", cache.generation())
    assert cache.peek(("url",)) == "new page"
    time.sleep(0.65)  # two check periods without a check: the caller must check itself
    assert cache.peek(("url",)) is None


def test_a_value_built_before_a_change_is_not_kept(database) -> None:
    cache = BoardCache(database)
    generation = cache.generation()
    cache.invalidate()  # the board changed while the value was being built
    cache.remember(("url",), "old page", generation)
    cache.version()
    assert cache.peek(("url",)) is None


def test_rendered_bodies_are_bounded_in_bytes(database) -> None:
    from medboard.web.fastpath import CachedBody

    cache = BoardCache(database, max_bytes=10_000)
    generation = cache.generation()
    for i in range(5):
        cache.remember((f"url{i}",), CachedBody.of(bytes(3000), "text/plain"), generation)
    kept = [i for i in range(5) if cache.peek((f"url{i}",)) is not None]
    assert kept == [2, 3, 4]  # the least recently used went first


def test_the_ranking_is_built_once_per_database_state(database) -> None:
    from medboard.leaderboard.ranking import ViewOptions, track_spec

    cache = BoardCache(database, check_seconds=60.0)
    spec = track_spec("open_medical")
    ranked = cache.ranked(spec)
    assert [r.model for r in ranked if r.rank == 1] == ["alpha-7b"]
    # a search, a filter or a sort asks for the same ranking: the same rows, not a new ranking
    assert cache.ranked(spec, ViewOptions(search="gamma", sort="model")) is ranked
    assert cache.ranked(spec, ViewOptions(include_hidden=True)) is not ranked
    hide(database, entry_ids(database)["alpha-7b"])
    cache.invalidate()
    assert [r.model for r in cache.ranked(spec) if r.rank == 1] != ["alpha-7b"]


def test_model_pages_never_push_the_board_views_out(database) -> None:
    from medboard.web.cache import PAGES

    cache = BoardCache(database, max_views=4, max_page_views=8)
    generation = cache.generation()
    cache.remember(("url", "/leaderboard/open_medical"), "board", generation)
    for i in range(100):
        cache.remember(("url", f"/model/{i}"), f"page {i}", generation, PAGES)
    assert cache.peek(("url", "/leaderboard/open_medical")) == "board"
    kept = [i for i in range(100) if cache.peek(("url", f"/model/{i}")) is not None]
    assert kept == list(range(92, 100))  # the pages' own bound, least recently used first out
