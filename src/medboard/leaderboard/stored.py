"""Entries as stored: what ranking reads from the database, and what makes a score partial.

`load_entries` reads one track's entries into plain `StoredEntry` values (two queries, no ORM
objects, no query per row): the scores with the question counts and the limit of the run behind
each (RunSpec.limit of a medboard run, read inside the database from the run's JSON, else the
limit the entry records: `medboard eval --record --limit` marks it, an lm-eval import has it in
its config), the protocol, the weight type and a published table's own average.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from medboard.results.db import Entry, Model, Run, TaskScore
from medboard.tasks import REGISTRY
from medboard.tasks.base import UnknownTaskError

METRIC = "acc"
UNKNOWN = "unknown"  # the filter value of an empty dtype or model type
ORIGINAL = "original"  # the weight type of an entry that names none (not an adapter or a merge)


@dataclass(frozen=True)
class StoredScore:
    value: float
    stderr: float | None = None
    n: int | None = None  # questions scored (None: not known, as in published tables)
    limit: float | None = None  # the subset the run was asked for (--limit), if any


def task_size(task: str) -> int | None:
    try:
        return REGISTRY.task(task).expected_size
    except UnknownTaskError:
        return None


def on_subset(task: str, score: StoredScore) -> bool:
    """Whether a score comes from a run cut short by a limit: asked for a subset, and fewer
    questions scored than the task has (a limit above the task's size cuts nothing; a set
    smaller than the limit was scored whole)."""
    if score.limit is None:
        return False
    if score.n is None:
        return True
    size = task_size(task)
    if size is not None and score.n >= size:
        return False
    return score.n >= score.limit


@dataclass(frozen=True)
class StoredEntry:
    """One entry as stored: what ranking needs, nothing more."""

    entry_id: int
    model: str
    scores: dict[str, StoredScore]  # task -> score of the spec's metric
    team: str | None = None
    base_model: str | None = None
    model_type: str = UNKNOWN
    weight_type: str = ORIGINAL
    dtype: str = ""
    parameters: int | None = None
    date: str | None = None
    origin: str = "published"
    source: str = ""
    protocol: str = "loglik"  # how the questions were asked (medboard.tasks.protocols)
    comm_cost_gb: float | None = None
    hidden: bool = False
    published_average: float | None = None  # the average a published table states (fraction)


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
    limits = {row[0]: _entry_limit(row[12]) for row in entry_rows}
    score_rows = session.execute(
        select(
            TaskScore.entry_id,
            TaskScore.task,
            TaskScore.value,
            TaskScore.stderr,
            TaskScore.n,
            _run_limit(session.get_bind().dialect.name),
        )
        .join(Entry, TaskScore.entry_id == Entry.id)
        .outerjoin(Run, TaskScore.run_id == Run.id)
        .where(Entry.track == track, TaskScore.metric == metric)
    ).all()
    for entry_id, task, value, stderr, n, limit in score_rows:
        limit = limit if limit is not None else limits.get(entry_id)
        scores[entry_id][task] = StoredScore(value, stderr, n, limit)
    return [
        StoredEntry(
            entry_id=row[0],
            model=row[1],
            team=row[2],
            base_model=row[3],
            model_type=row[4] or UNKNOWN,
            weight_type=_text(row[12], "weight_type") or ORIGINAL,
            dtype=row[5] or "",
            parameters=row[6],
            date=row[7],
            origin=row[8],
            source=row[9] or "",
            comm_cost_gb=row[10],
            hidden=bool(row[11]),
            protocol=entry_protocol(track, row[8], row[12]),
            scores=scores[row[0]],
            published_average=_published_average(row[8], row[12]),
        )
        for row in entry_rows
    ]


def _text(extra: dict[str, Any] | None, name: str) -> str:
    value = (extra or {}).get(name) if isinstance(extra, dict) else None
    return value if isinstance(value, str) else ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def _run_limit(dialect: str) -> ColumnElement[Any]:
    """RunSpec.limit of the run behind a score, read from the run's JSON inside the database.

    SQLite refuses the whole query on one run whose JSON it cannot parse (a NaN stderr, as
    Python writes it), so it reads only valid JSON there; PostgreSQL never stores invalid JSON.
    """
    limit = Run.result[("spec", "limit")].as_float()
    if dialect == "sqlite":
        return case((func.json_valid(Run.result) == 1, limit), else_=None)
    return limit


def _entry_limit(extra: dict[str, Any] | None) -> float | None:
    """The limit an entry records: `limit` (medboard.evaluation marks --limit runs), or the
    config of an imported lm-eval run."""
    if not isinstance(extra, dict):
        return None
    config = extra.get("config")
    found = _number(extra.get("limit"))
    if found is None and isinstance(config, dict):
        found = _number(config.get("limit"))
    return found


def _published_average(origin: str, extra: dict[str, Any] | None) -> float | None:
    """The average a published table states (in percent there), as a fraction."""
    if origin != "published" or not isinstance(extra, dict):
        return None
    value = _number(extra.get("published_average"))
    return None if value is None else value / 100.0


def facet_values(entries: Sequence[StoredEntry]) -> dict[str, list[str]]:
    """The values the filters offer: model and weight types, precisions, protocols and origins
    present on a track."""
    return {
        "model_types": sorted({e.model_type or UNKNOWN for e in entries}),
        "weight_types": sorted({e.weight_type or ORIGINAL for e in entries}),
        "precisions": sorted({e.dtype or UNKNOWN for e in entries}),
        "protocols": sorted({e.protocol for e in entries}),
        "sources": sorted({e.origin for e in entries}),
    }
