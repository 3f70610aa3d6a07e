"""A small cache of what the leaderboard pages read, keyed by a fingerprint of the database.

The leaderboard of a track is read by every visitor and changes only when an entry is added,
hidden or deleted. Each track's entries (and each rendered view) are kept with the fingerprint
they were built from; the fingerprint (counts and largest ids of entries and scores, the number
of hidden entries) is read again at most every `check_seconds`, and anything older than
`max_age_seconds` is rebuilt anyway, so a change the fingerprint cannot see (say, one entry
hidden and another shown in between) shows within that bound. Code that changes entries (the
admin actions) can call `invalidate()` to show it at once. A value missing from the cache is
built by one thread while the others asking for it wait, so a burst of requests after a change
costs one build, not one per request.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Integer, cast, func, select

from medboard.leaderboard.ranking import StoredEntry, load_entries
from medboard.results.db import Database, Entry, TaskScore

T = TypeVar("T")
Fingerprint = tuple[object, ...]


class BoardCache:
    def __init__(
        self,
        database: Database,
        check_seconds: float = 1.0,
        max_age_seconds: float = 30.0,
        max_views: int = 256,
    ) -> None:
        self.database = database
        self.check_seconds = check_seconds
        self.max_age_seconds = max_age_seconds
        self.max_views = max_views
        self._lock = threading.Lock()
        self._fingerprint: Fingerprint | None = None
        self._checked_at = 0.0
        self._born_at = 0.0
        self._tracks: dict[str, list[StoredEntry]] = {}
        self._views: OrderedDict[tuple[str, ...], object] = OrderedDict()
        self._building: dict[tuple[str, ...], threading.Lock] = {}

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

    def version(self) -> Fingerprint:
        """The current fingerprint; drops everything cached when it changed."""
        now = time.monotonic()
        with self._lock:
            fresh = now - self._checked_at < self.check_seconds
            young = now - self._born_at < self.max_age_seconds
            if self._fingerprint is not None and fresh and young:
                return self._fingerprint
        fingerprint = self._read_fingerprint()
        with self._lock:
            if fingerprint != self._fingerprint or now - self._born_at >= self.max_age_seconds:
                self._tracks.clear()
                self._views.clear()
                self._fingerprint = fingerprint
                self._born_at = now
            self._checked_at = now
            return fingerprint

    def invalidate(self) -> None:
        with self._lock:
            self._fingerprint = None
            self._tracks.clear()
            self._views.clear()

    def _single_flight(self, key: tuple[str, ...]) -> threading.Lock:
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
            if found is not None:
                return found
            with self.database.session() as session:
                loaded = load_entries(session, track)
            with self._lock:
                self._tracks[track] = loaded
        return loaded

    def _cached(self, key: tuple[str, ...]) -> tuple[bool, object]:
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return True, self._views[key]
        return False, None

    def view(self, key: tuple[str, ...], build: Callable[[], T]) -> T:
        """A value built once per key and database state (a rendered page, say)."""
        self.version()
        found, value = self._cached(key)
        if found:
            return value  # type: ignore[return-value]
        with self._single_flight(("view", *key)):
            found, value = self._cached(key)
            if found:
                return value  # type: ignore[return-value]
            built = build()
            with self._lock:
                self._views[key] = built
                while len(self._views) > self.max_views:
                    self._views.popitem(last=False)
                if len(self._building) > 4 * self.max_views:
                    self._building.clear()  # only locks nobody holds long; a few may be remade
        return built
