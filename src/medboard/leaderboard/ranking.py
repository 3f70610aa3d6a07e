"""Ranking: a pure function of stored results and a leaderboard spec.

`load_entries` reads one track's entries from the database into plain `StoredEntry` values (two
queries, no ORM objects); `rank_entries` turns them into `RankedRow`s for one view (sort, search,
filters) without touching the database, so it is unit-testable on hand-made rows.

Rules:
- the score of a task is its `acc` (a fraction 0-1); the average is the plain mean over the
  track's tasks;
- only complete entries (a score for every task of the track) get an average and a rank; partial
  entries stay on the board, unranked, with the tasks they have (they sort last by average);
- ranks are competition ranks over the whole track (1, 2, 2, 4): searching or filtering hides rows
  but never renumbers them, so a shared, filtered view shows the true ranks;
- hidden entries are left out (and not ranked) unless asked for;
- sorting by any column puts missing values last, in both directions; ties keep the rank order.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medboard.errors import MedboardError
from medboard.results.db import Entry, Model, TaskScore
from medboard.tasks import REGISTRY, TRACKS

TRACK_TITLES = {"open_medical": "Open Medical-LLM", "flowertune_medical": "FlowerTune medical"}
METRIC = "acc"
Z95 = 1.96
UNKNOWN = "unknown"  # the filter value of an empty dtype or model type
_TIE_DIGITS = 9  # averages equal to 1e-9 share a rank (float sums differ in the last bits)

# Columns other than the tasks; True: sorted descending by default (bigger first).
COLUMNS: dict[str, bool] = {
    "rank": False,
    "average": True,
    "model": False,
    "team": False,
    "model_type": False,
    "parameters": True,
    "dtype": False,
    "date": True,
    "origin": False,
    "comm_cost_gb": False,  # lower is better on the federated track
}


class UnknownTrackError(MedboardError):
    """A track that is not one of TRACKS."""


@dataclass(frozen=True)
class LeaderboardSpec:
    """What a track ranks: its tasks, in display order, and the metric."""

    track: str
    title: str
    tasks: tuple[str, ...]
    metric: str = METRIC
    comm_cost: bool = False  # show the federated communication cost


def track_spec(track: str) -> LeaderboardSpec:
    if track not in TRACKS:
        raise UnknownTrackError(f"no track '{track}' (tracks: {', '.join(TRACKS)})")
    tasks = tuple(t.name for t in REGISTRY.resolve(track, None))
    return LeaderboardSpec(
        track=track,
        title=TRACK_TITLES[track],
        tasks=tasks,
        comm_cost=track == "flowertune_medical",
    )


@dataclass(frozen=True)
class StoredScore:
    value: float
    stderr: float | None = None
    n: int | None = None


@dataclass(frozen=True)
class StoredEntry:
    """One entry as stored: what ranking needs, nothing more."""

    entry_id: int
    model: str
    scores: dict[str, StoredScore]  # task -> score of the spec's metric
    team: str | None = None
    base_model: str | None = None
    model_type: str = UNKNOWN
    dtype: str = ""
    parameters: int | None = None
    date: str | None = None
    origin: str = "published"
    source: str = ""
    protocol: str = "loglik"  # how the questions were asked (medboard.tasks.protocols)
    comm_cost_gb: float | None = None
    hidden: bool = False


@dataclass(frozen=True)
class ViewOptions:
    """One view of a track: how to sort and which rows to keep."""

    sort: str = "average"
    descending: bool | None = None  # None: the column's default direction
    search: str = ""
    model_types: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # origins: evaluated, imported, published
    min_params: float | None = None  # parameter count; a bound drops unknown sizes
    max_params: float | None = None
    include_hidden: bool = False
    complete_only: bool = False


@dataclass(frozen=True)
class RankedRow:
    rank: int | None  # None: a partial entry, not ranked
    entry_id: int
    model: str
    team: str | None
    base_model: str | None
    model_type: str
    dtype: str
    parameters: int | None
    date: str | None
    origin: str
    source: str
    comm_cost_gb: float | None
    scores: dict[str, float | None]  # every task of the track
    stderrs: dict[str, float | None]
    intervals: dict[str, tuple[float, float] | None]  # 95%: value +- 1.96 stderr, in [0, 1]
    average: float | None
    complete: bool
    hidden: bool = False
    missing: tuple[str, ...] = field(default=())
    protocol: str = "loglik"

    def value(self, column: str) -> Any:
        """The value a column sorts by (None when missing, an empty text too)."""
        if column in ("rank", "average"):
            return self.average
        if column in self.scores:
            return self.scores[column]
        value = getattr(self, "origin" if column == "source" else column)
        return None if value == "" else value

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "entry_id": self.entry_id,
            "model": self.model,
            "team": self.team,
            "base_model": self.base_model,
            "model_type": self.model_type,
            "dtype": self.dtype,
            "parameters": self.parameters,
            "date": self.date,
            "origin": self.origin,
            "source": self.source,
            "protocol": self.protocol,
            "comm_cost_gb": self.comm_cost_gb,
            "average": self.average,
            "complete": self.complete,
            "scores": self.scores,
            "stderrs": self.stderrs,
            "intervals": {t: list(i) if i else None for t, i in self.intervals.items()},
        }


def sort_columns(spec: LeaderboardSpec) -> tuple[str, ...]:
    """Every column a view of this track can sort by."""
    return (*COLUMNS, "source", *spec.tasks)


def default_descending(column: str) -> bool:
    return COLUMNS.get(column, True)  # tasks: bigger first


def interval(value: float, stderr: float | None) -> tuple[float, float] | None:
    if stderr is None or math.isnan(stderr):
        return None
    return max(0.0, value - Z95 * stderr), min(1.0, value + Z95 * stderr)


def _row(entry: StoredEntry, spec: LeaderboardSpec) -> RankedRow:
    found = {t: entry.scores.get(t) for t in spec.tasks}
    missing = tuple(t for t, s in found.items() if s is None)
    complete = not missing and bool(spec.tasks)
    average = sum(s.value for s in found.values() if s) / len(spec.tasks) if complete else None
    return RankedRow(
        rank=None,
        entry_id=entry.entry_id,
        model=entry.model,
        team=entry.team,
        base_model=entry.base_model,
        model_type=entry.model_type or UNKNOWN,
        dtype=entry.dtype,
        parameters=entry.parameters,
        date=entry.date,
        origin=entry.origin,
        source=entry.source,
        protocol=entry.protocol,
        comm_cost_gb=entry.comm_cost_gb if spec.comm_cost else None,
        scores={t: s.value if s else None for t, s in found.items()},
        stderrs={t: s.stderr if s else None for t, s in found.items()},
        intervals={t: interval(s.value, s.stderr) if s else None for t, s in found.items()},
        average=average,
        complete=complete,
        hidden=entry.hidden,
        missing=missing,
    )


def _with_ranks(rows: list[RankedRow]) -> list[RankedRow]:
    """Competition ranks by average (1, 2, 2, 4); partial entries keep None."""
    ranked = sorted(
        (r for r in rows if r.average is not None),
        key=lambda r: (-round(r.average or 0.0, _TIE_DIGITS), r.entry_id),
    )
    ranks: dict[int, int] = {}
    previous: float | None = None
    for position, row in enumerate(ranked, start=1):
        key = round(row.average or 0.0, _TIE_DIGITS)
        if key != previous:
            rank, previous = position, key
        ranks[row.entry_id] = rank
    return [replace(r, rank=ranks.get(r.entry_id)) for r in rows]


def _matches(row: RankedRow, view: ViewOptions) -> bool:
    if view.complete_only and not row.complete:
        return False
    if view.search:
        text = " ".join(x for x in (row.model, row.team, row.base_model) if x).casefold()
        if not all(word in text for word in view.search.casefold().split()):
            return False
    if view.model_types and (row.model_type or UNKNOWN) not in view.model_types:
        return False
    if view.precisions and (row.dtype or UNKNOWN) not in view.precisions:
        return False
    if view.protocols and row.protocol not in view.protocols:
        return False
    if view.sources and row.origin not in view.sources:
        return False
    if view.min_params is not None or view.max_params is not None:
        if row.parameters is None:
            return False
        if view.min_params is not None and row.parameters < view.min_params:
            return False
        if view.max_params is not None and row.parameters > view.max_params:
            return False
    return True


def _sorted(rows: list[RankedRow], column: str, descending: bool) -> list[RankedRow]:
    # Rank order first, so rows that tie on the column stay in rank order (sorts are stable).
    by_rank = sorted(rows, key=lambda r: (r.rank is None, r.rank or 0, r.entry_id))
    present = [r for r in by_rank if r.value(column) is not None]
    absent = [r for r in by_rank if r.value(column) is None]

    def key(row: RankedRow) -> Any:
        value = row.value(column)
        return value.casefold() if isinstance(value, str) else value

    if column == "rank":  # rank 1 first unless reversed; equal to sorting by average
        descending = not descending
    return sorted(present, key=key, reverse=descending) + absent


def rank_entries(
    entries: Iterable[StoredEntry], spec: LeaderboardSpec, view: ViewOptions | None = None
) -> list[RankedRow]:
    """The rows of one view of a track: ranked over the whole track, then filtered and sorted."""
    view = view or ViewOptions()
    if view.sort not in sort_columns(spec):
        raise MedboardError(
            f"cannot sort by '{view.sort}' (columns: {', '.join(sort_columns(spec))})"
        )
    rows = [_row(e, spec) for e in entries if view.include_hidden or not e.hidden]
    rows = _with_ranks(rows)
    rows = [r for r in rows if _matches(r, view)]
    descending = default_descending(view.sort) if view.descending is None else view.descending
    return _sorted(rows, view.sort, descending)


def entry_protocol(track: str, origin: str, extra: dict[str, Any] | None) -> str:
    """The protocol name of an entry: recorded in `extra` ("generative/1" -> "generative"),
    else its track's own (published FlowerTune numbers are generative, the rest loglik)."""
    recorded = (extra or {}).get("protocol")
    if isinstance(recorded, str) and recorded:
        return recorded.split("/", 1)[0]
    return "flowertune" if track == "flowertune_medical" and origin == "published" else "loglik"


def load_entries(session: Session, track: str, metric: str = METRIC) -> list[StoredEntry]:
    """Every entry of a track (hidden ones too, flagged) with its scores of `metric`."""
    entry_rows = session.execute(
        select(
            Entry.id,
            Model.name,
            Entry.team,
            Model.base_model,
            Model.model_type,
            Model.dtype,
            Model.parameters,
            Entry.date,
            Entry.origin,
            Entry.source,
            Entry.comm_cost_gb,
            Entry.hidden,
            Entry.extra,
        )
        .join(Model, Entry.model_id == Model.id)
        .where(Entry.track == track)
        .order_by(Entry.id)
    ).all()
    scores: dict[int, dict[str, StoredScore]] = {row[0]: {} for row in entry_rows}
    score_rows = session.execute(
        select(TaskScore.entry_id, TaskScore.task, TaskScore.value, TaskScore.stderr, TaskScore.n)
        .join(Entry, TaskScore.entry_id == Entry.id)
        .where(Entry.track == track, TaskScore.metric == metric)
    ).all()
    for entry_id, task, value, stderr, n in score_rows:
        scores[entry_id][task] = StoredScore(value, stderr, n)
    return [
        StoredEntry(
            entry_id=row[0],
            model=row[1],
            team=row[2],
            base_model=row[3],
            model_type=row[4] or UNKNOWN,
            dtype=row[5] or "",
            parameters=row[6],
            date=row[7],
            origin=row[8],
            source=row[9] or "",
            comm_cost_gb=row[10],
            hidden=bool(row[11]),
            protocol=entry_protocol(track, row[8], row[12]),
            scores=scores[row[0]],
        )
        for row in entry_rows
    ]


def facet_values(entries: Sequence[StoredEntry]) -> dict[str, list[str]]:
    """The values the filters offer: model types, precisions and origins present on a track."""
    return {
        "model_types": sorted({e.model_type or UNKNOWN for e in entries}),
        "precisions": sorted({e.dtype or UNKNOWN for e in entries}),
        "protocols": sorted({e.protocol for e in entries}),
        "sources": sorted({e.origin for e in entries}),
    }
