"""A small cache of what the leaderboard pages read, keyed by a fingerprint of the database.

The leaderboard of a track is read by every visitor and changes only when an entry is added,
hidden or deleted. Each track's entries (and each rendered view) are kept with the fingerprint
they were built from; the fingerprint (counts and largest ids of entries and scores, the number
of hidden entries) is read again at most every `check_seconds`, by one thread at a time (the
others go on with the fingerprint they have). A change the fingerprint cannot see (say, one entry
hidden and another shown in between) is caught every `max_age_seconds`: the cached tracks are
read again and compared with what the views were built from, and everything is dropped if they
differ (kept, at no cost to visitors, if they do not). Code that changes entries (the admin
actions) can call `invalidate()` to show it at once. A value missing from the cache is built by
one thread while the others asking for it wait, so a burst of requests after a change costs one
build, not one per request.

`peek` is for the server's fast path (`fastpath.CachedViews`): a cached value without ever
touching the database; when a check is due it still answers (for at most another
`check_seconds`) while a background thread checks, so a change shows within about
`check_seconds` plus the time of one check, and no visitor waits for the check.
Values with an `nbytes` attribute (rendered bodies) count towards `max_bytes`; the least recently
used views go first when either bound is reached. Views live in groups, each with its own bounds:
`BOARD` (the default: the leaderboard's views) and `PAGES` (one or more per model page, of which
there are as many as entries), so that a crawl through the model pages never pushes the
leaderboard's views out.
"""

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

from sqlalchemy import Integer, cast, func, select

from medboard.leaderboard.ranking import (
    LeaderboardSpec,
    RankedRow,
    StoredEntry,
    ViewOptions,
    load_entries,
    ranked_rows,
)
from medboard.results.db import Database, Entry, TaskScore

logger = logging.getLogger(__name__)
T = TypeVar("T")
Fingerprint = tuple[object, ...]
Key = tuple[Hashable, ...]
BOARD = "board"
PAGES = "pages"


def _size(value: object) -> int:
    size = getattr(value, "nbytes", 0)
    return size if isinstance(size, int) else 0


class BoardCache:
    def __init__(
        self,
        database: Database,
        check_seconds: float = 1.0,
        max_age_seconds: float = 30.0,
        max_views: int = 512,
        max_bytes: int = 64 * 2**20,
        max_page_views: int = 8192,
        max_page_bytes: int = 64 * 2**20,
    ) -> None:
        self.database = database
        self.check_seconds = check_seconds
        self.max_age_seconds = max_age_seconds
        self.max_views = max_views
        self.max_bytes = max_bytes
        self._bounds = {BOARD: (max_views, max_bytes), PAGES: (max_page_views, max_page_bytes)}
        self._lock = threading.Lock()
        self._checking = threading.Lock()  # one fingerprint check at a time
        self._refreshing = False  # a background check started by `peek` is running
        self._fingerprint: Fingerprint | None = None
        self._checked_at = 0.0
        self._born_at = 0.0
        self._tracks: dict[str, list[StoredEntry]] = {}
        self._groups: dict[str, OrderedDict[Key, object]] = {g: OrderedDict() for g in self._bounds}
        self._bytes = dict.fromkeys(self._bounds, 0)
        self._generation = 0  # counts the clears: a value built before one is not kept
        self._building: dict[Key, threading.Lock] = {}

    def _read_fingerprint(self) -> Fingerprint:
        with self.database.session() as session:
            entries = session.execute(
                select(
                    func.count(Entry.id),
                    func.max(Entry.id),
                    func.sum(cast(Entry.hidden, Integer)),
                )
            ).one()
            scores = session.execute(select(func.count(TaskScore.id), func.max(TaskScore.id))).one()
        return (*entries, *scores)

    def _fresh(self, now: float) -> bool:
        """Whether the fingerprint is known and was checked recently enough (hold the lock)."""
        return (
            self._fingerprint is not None
            and now - self._checked_at < self.check_seconds
            and now - self._born_at < self.max_age_seconds
        )

    def _clear(self) -> None:
        self._generation += 1
        self._tracks.clear()
        for views in self._groups.values():
            views.clear()
        self._bytes = dict.fromkeys(self._bounds, 0)

    def _changed_in_place(self, tracks: dict[str, list[StoredEntry]]) -> bool:
        """Whether a cached track differs from the database (a change the fingerprint missed)."""
        with self.database.session() as session:
            return any(load_entries(session, track) != old for track, old in tracks.items())

    def version(self) -> Fingerprint:
        """The current fingerprint; drops everything cached when the database changed."""
        with self._lock:
            current = self._fingerprint
            if self._fresh(time.monotonic()):
                return current  # type: ignore[return-value]
        if current is not None:
            if not self._checking.acquire(blocking=False):
                return current  # another thread is checking: at most one check late
        else:
            self._checking.acquire()
        try:
            now = time.monotonic()
            with self._lock:
                if self._fresh(now):  # checked by another thread while this one waited
                    return self._fingerprint  # type: ignore[return-value]
                expired = now - self._born_at >= self.max_age_seconds
                tracks = dict(self._tracks)
                known = self._fingerprint
            fingerprint = self._read_fingerprint()
            changed = fingerprint != known
            if not changed and expired:
                changed = self._changed_in_place(tracks)
            with self._lock:
                if changed or self._fingerprint is None:
                    self._clear()
                    self._born_at = now
                elif expired:
                    self._born_at = now  # nothing changed: the views stay
                self._fingerprint = fingerprint
                self._checked_at = now
                return fingerprint
        finally:
            self._checking.release()

    def generation(self) -> int:
        """The state of the cache after checking the database (see `remember`)."""
        self.version()
        with self._lock:
            return self._generation

    def invalidate(self) -> None:
        with self._lock:
            self._fingerprint = None
            self._clear()

    def _single_flight(self, key: Key) -> threading.Lock:
        with self._lock:
            return self._building.setdefault(key, threading.Lock())

    def entries(self, track: str) -> list[StoredEntry]:
        """The stored entries of a track (hidden ones flagged)."""
        self.version()
        with self._lock:
            found = self._tracks.get(track)
        if found is not None:
            return found
        with self._single_flight(("entries", track)):
            with self._lock:
                found = self._tracks.get(track)
                generation = self._generation
            if found is not None:
                return found
            with self.database.session() as session:
                loaded = load_entries(session, track)
            with self._lock:
                if generation == self._generation:
                    self._tracks[track] = loaded
        return loaded

    def ranked(self, spec: LeaderboardSpec, view: ViewOptions | None = None) -> list[RankedRow]:
        """The track's rows ranked (`ranked_rows`: before any search, filter or sort), once per
        database state and kind of ranking (hidden rows or not, per protocol or mixed): a view
        then costs a pass over these rows, not a ranking of the whole track."""
        view = view or ViewOptions()
        kind = ViewOptions(include_hidden=view.include_hidden, mixed=view.mixed)
        return self.view(
            ("ranked", spec, kind), lambda: ranked_rows(self.entries(spec.track), spec, kind)
        )

    def _cached(self, key: Key, group: str) -> tuple[bool, object]:
        with self._lock:
            views = self._groups[group]
            if key in views:
                views.move_to_end(key)
                return True, views[key]
        return False, None

    def _store(self, key: Key, value: object, group: str) -> None:
        """Keep a view (hold the lock), dropping the least recently used beyond the bounds."""
        views = self._groups[group]
        max_views, max_bytes = self._bounds[group]
        old = views.pop(key, None)
        self._bytes[group] += _size(value) - _size(old)
        views[key] = value
        while len(views) > 1 and (len(views) > max_views or self._bytes[group] > max_bytes):
            _, dropped = views.popitem(last=False)
            self._bytes[group] -= _size(dropped)
        if len(self._building) > 4 * sum(n for n, _ in self._bounds.values()):
            self._building.clear()  # only locks nobody holds long; a few may be remade

    def view(self, key: Key, build: Callable[[], T], group: str = BOARD) -> T:
        """A value built once per key and database state (a rendered page, say)."""
        self.version()
        found, value = self._cached(key, group)
        if found:
            return value  # type: ignore[return-value]
        with self._single_flight(("view", group, *key)):
            found, value = self._cached(key, group)
            if found:
                return value  # type: ignore[return-value]
            with self._lock:
                generation = self._generation
            built = build()
            self.remember(key, built, generation, group)
        return built

    def remember(self, key: Key, value: object, generation: int, group: str = BOARD) -> None:
        """Keep `value` under `key` (the raw URL of a view, say, for `peek`), unless the cache
        was cleared since `generation` (then it may have been built from older data)."""
        with self._lock:
            if generation == self._generation and self._fingerprint is not None:
                self._store(key, value, group)

    def peek(self, key: Key) -> object | None:
        """A cached value, or None; never reads the database, never waits for it.

        While the fingerprint is fresh, the value; once a check is due, still the value for up
        to another `check_seconds`, while one background thread checks (so visitors never queue
        behind a check); after that, None: the caller goes the slow way, which checks.
        """
        now = time.monotonic()
        with self._lock:
            if self._fingerprint is None:
                return None
            refresh = False
            if not self._fresh(now):
                if now - self._checked_at >= 2 * self.check_seconds:
                    return None
                refresh, self._refreshing = not self._refreshing, True
            value = None
            for views in self._groups.values():
                value = views.get(key)
                if value is not None:
                    views.move_to_end(key)
                    break
        if refresh:
            threading.Thread(target=self._refresh, name="board-cache-check", daemon=True).start()
        return value

    def _refresh(self) -> None:
        try:
            self.version()
        except Exception:  # the database is away: the next request's own check will say so
            logger.warning("checking the leaderboard cache failed", exc_info=True)
        finally:
            with self._lock:
                self._refreshing = False
