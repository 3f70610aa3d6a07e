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
used views go first when either bound is reached.
"""

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

from sqlalchemy import Integer, cast, func, select

from medboard.leaderboard.ranking import StoredEntry, load_entries
from medboard.results.db import Database, Entry, TaskScore

logger = logging.getLogger(__name__)
T = TypeVar("T")
Fingerprint = tuple[object, ...]
Key = tuple[Hashable, ...]


def _size(value: object) -> int:
    size = getattr(value, "nbytes", 0)
    return size if isinstance(size, int) else 0


class BoardCache:
    def __init__(
        self,
        database: Database,
        check_seconds: float = 1.0,
        max_age_seconds: float = 30.0,
        max_views: int = 256,
        max_bytes: int = 64 * 2**20,
    ) -> None:
        self.database = database
        self.check_seconds = check_seconds
        self.max_age_seconds = max_age_seconds
        self.max_views = max_views
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._checking = threading.Lock()  # one fingerprint check at a time
        self._refreshing = False  # a background check started by `peek` is running
        self._fingerprint: Fingerprint | None = None
        self._checked_at = 0.0
        self._born_at = 0.0
        self._tracks: dict[str, list[StoredEntry]] = {}
        self._views: OrderedDict[Key, object] = OrderedDict()
        self._bytes = 0
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
        self._views.clear()
        self._bytes = 0

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

    def _cached(self, key: Key) -> tuple[bool, object]:
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return True, self._views[key]
        return False, None

    def _store(self, key: Key, value: object) -> None:
        """Keep a view (hold the lock), dropping the least recently used beyond the bounds."""
        old = self._views.pop(key, None)
        self._bytes += _size(value) - _size(old)
        self._views[key] = value
        while len(self._views) > 1 and (
            len(self._views) > self.max_views or self._bytes > self.max_bytes
        ):
            _, dropped = self._views.popitem(last=False)
            self._bytes -= _size(dropped)
        if len(self._building) > 4 * self.max_views:
            self._building.clear()  # only locks nobody holds long; a few may be remade

    def view(self, key: Key, build: Callable[[], T]) -> T:
        """A value built once per key and database state (a rendered page, say)."""
        self.version()
        found, value = self._cached(key)
        if found:
            return value  # type: ignore[return-value]
        with self._single_flight(("view", *key)):
            found, value = self._cached(key)
            if found:
                return value  # type: ignore[return-value]
            with self._lock:
                generation = self._generation
            built = build()
            self.remember(key, built, generation)
        return built

    def remember(self, key: Key, value: object, generation: int) -> None:
        """Keep `value` under `key` (the raw URL of a view, say, for `peek`), unless the cache
        was cleared since `generation` (then it may have been built from older data)."""
        with self._lock:
            if generation == self._generation and self._fingerprint is not None:
                self._store(key, value)

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
            value = self._views.get(key)
            if value is not None:
                self._views.move_to_end(key)
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
