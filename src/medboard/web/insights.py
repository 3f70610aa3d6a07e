"""The web side of medboard.leaderboard.analysis: which records to read for a model page, and
the rank intervals of a board (computed once per database state, see BoardCache)."""

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medboard.leaderboard.analysis import (
    board_rank_intervals,
    entry_analysis,
    paired_task,
    split_shift,
)
from medboard.leaderboard.ranking import TRACKS, LeaderboardSpec, track_spec
from medboard.results.db import Entry, Run, TaskScore
from medboard.web.cache import BoardCache
from medboard.web.model_data import read_samples

METRIC = "acc"


def entry_insights(track: str, runs: dict[str, Run]) -> dict[str, Any]:
    """Intervals, calibration, robustness and unparsed counts of one entry (model page)."""
    tasks = track_spec(track).task_names if track in TRACKS else ()
    order = {task: i for i, task in enumerate(tasks)}
    ordered = sorted(runs, key=lambda t: (order.get(split_shift(t)[0], len(order)), t))
    records = {task: read_samples(runs[task].samples_path) or () for task in ordered}
    found = entry_analysis({t: r for t, r in records.items() if r}, track_tasks=tasks)
    found["protocols"] = sorted({run.protocol for run in runs.values()})
    return found


def _records_of(session: Session, tasks: tuple[str, ...], *where: Any) -> dict[int, dict]:
    """entry id -> task -> per-question records (() when the file is gone) of the runs behind
    the `acc` scores of `tasks`, for the entries `where` selects; one query."""
    rows = session.execute(
        select(TaskScore.entry_id, TaskScore.task, Run.samples_path)
        .join(Entry, TaskScore.entry_id == Entry.id)
        .join(Run, TaskScore.run_id == Run.id)
        .where(TaskScore.metric == METRIC, TaskScore.task.in_(tasks), *where)
    ).all()
    found: dict[int, dict[str, Any]] = {}
    for entry_id, task, path in rows:
        found.setdefault(entry_id, {})[task] = read_samples(path) or ()
    return found


def paired_against_first(
    session: Session, entry_ids: list[int], tasks: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Each entry against the first, per task both have per-question records for (paired
    bootstrap and McNemar on the questions both answered)."""
    if len(entry_ids) < 2:
        return []
    records = _records_of(session, tasks, Entry.id.in_(entry_ids))
    first = entry_ids[0]
    results = []
    for other in entry_ids[1:]:
        for task in tasks:
            a, b = records.get(first, {}).get(task), records.get(other, {}).get(task)
            found = paired_task(a, b) if a and b else None
            if found is not None:
                results.append({"a": first, "b": other, "task": task, **found})
    return results


def board_uncertainty(
    session: Session, spec: LeaderboardSpec, entry_ids: Collection[int] | None = None
) -> dict[str, Any]:
    """Rank intervals of the visible entries of a track that have per-question records (of
    those of `entry_ids` only, when given: the entries of one ranking).

    One query finds the runs behind the track's scores; entries without runs (published) are
    listed as excluded without reading anything.
    """
    found_records = _records_of(
        session, spec.task_names, Entry.track == spec.track, Entry.hidden.is_(False)
    )
    entries = {
        str(entry_id): by_task
        for entry_id, by_task in found_records.items()
        if entry_ids is None or entry_id in entry_ids
    }
    found = board_rank_intervals(entries, spec.task_names)
    found["compared"] = len(found["ranks"])
    return found


def cached_board_uncertainty(cache: BoardCache, spec: LeaderboardSpec) -> dict[str, Any]:
    """board_uncertainty among the entries ranked in the track's own protocol (complete, on
    every task's full set of questions), built once per database state."""

    def build() -> dict[str, Any]:
        ids = {r.entry_id for r in cache.ranked(spec) if r.ranking == spec.protocol}
        with cache.database.session() as session:
            return board_uncertainty(session, spec, ids)

    return cache.view(("uncertainty", spec.track), build)


def row_uncertainty(found: dict[str, Any], entry_id: int) -> dict[str, Any] | None:
    """An entry's rank interval and whether it is told apart from the leader, if computed."""
    rank = found["ranks"].get(str(entry_id))
    if rank is None:
        return None
    return {
        "rank": rank["rank"],
        "interval": [rank["low"], rank["high"]],
        "of": found["compared"],
        "indistinguishable_from_leader": rank["indistinguishable"],
        "p_vs_leader": rank["p_vs_leader"],
    }
