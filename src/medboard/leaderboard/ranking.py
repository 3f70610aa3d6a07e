"""Ranking: a pure function of stored results and a leaderboard spec.

`load_entries` (medboard.leaderboard.stored) reads one track's entries from the database into
plain `StoredEntry` values (two queries, no ORM objects); `rank_entries` turns them into
`RankedRow`s for one view (sort, search, filters) without touching the database, so it is
unit-testable on hand-made rows.

Rules:
- the score of a task is its `acc` (a fraction 0-1); the average is the plain mean over the
  track's tasks;
- only complete entries get an average and a rank: a score for every task of the track, each on
  the task's full set of questions. A run asked for a subset (`medboard eval --limit`, lm-eval's
  `--limit`) that scored fewer questions than the task has is partial; published rows carry no
  question counts and are complete by definition. Partial entries stay on the board, unranked,
  with the tasks they have, shown apart after the ranked ones;
- entries are ranked among entries of the same protocol (loglik, flowertune, generative, cot:
  their numbers are not comparable), the track's own protocol first; a view may ask for one
  ranking over all protocols (`ViewOptions.mixed`), and `mixing_warning` then says so;
- ranks are competition ranks over the whole track (1, 2, 2, 4): searching or filtering hides rows
  but never renumbers them, so a shared, filtered view shows the true ranks;
- a published row shows its average as published (ranked by it); where the mean of its task
  columns reads otherwise at 2 decimals (rounded half up, `percent_text`), the row carries that
  mean as `recomputed_average`;
- hidden entries are left out (and not ranked) unless asked for;
- sorting by any column orders the rows within each ranking, and the unranked rows after them;
  missing values go last, in both directions; ties keep the rank order.
"""

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from medboard.errors import MedboardError
from medboard.leaderboard.stored import (
    METRIC,
    ORIGINAL,
    UNKNOWN,
    StoredEntry,
    on_subset,
    task_size,
)
from medboard.leaderboard.stored import StoredScore as StoredScore  # re-exported: the callers
from medboard.leaderboard.stored import entry_protocol as entry_protocol  # of ranking read
from medboard.leaderboard.stored import facet_values as facet_values  # the stored side from
from medboard.leaderboard.stored import load_entries as load_entries  # here too
from medboard.tasks import REGISTRY, TRACKS

TRACK_TITLES = {name: track.title for name, track in REGISTRY.tracks().items()}
# The protocol a track's reference numbers were scored by (its published rows): ranked first.
TRACK_PROTOCOLS = {name: track.protocol for name, track in REGISTRY.tracks().items()}
Z95 = 1.96
MIXED = "all"  # the ranking of a view that ranks every protocol together
_TIE_DIGITS = 9  # averages equal to 1e-9 share a rank (float sums differ in the last bits)

# Columns other than the tasks; True: sorted descending by default (bigger first).
COLUMNS: dict[str, bool] = {
    "rank": False,
    "average": True,
    "model": False,
    "team": False,
    "model_type": False,
    "weight_type": False,
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
    """What a track ranks: its columns, in display order, and the metric.

    A column is a task, or a benchmark whose subjects are tasks of their own (`members`: CMMLU's
    seven medical subjects make one column, their size-weighted mean, as lm-eval aggregates a
    group). The average is the plain mean of the columns. `languages` gives each column's
    language: a track in several languages also has an average per language ("avg_<code>").
    """

    track: str
    title: str
    tasks: tuple[str, ...]  # the columns
    metric: str = METRIC
    comm_cost: bool = False  # show the federated communication cost
    protocol: str = "loglik"  # the track's own protocol, ranked first
    members: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)  # groups
    languages: Mapping[str, str] = field(default_factory=dict, hash=False)  # column -> ISO code

    def column_tasks(self, column: str) -> tuple[str, ...]:
        return self.members.get(column, (column,))

    @property
    def task_names(self) -> tuple[str, ...]:
        """Every task the track's columns are made of."""
        return tuple(t for column in self.tasks for t in self.column_tasks(column))

    @property
    def language_codes(self) -> tuple[str, ...]:
        """The languages of the columns, in column order; empty for a one-language track."""
        codes = tuple(dict.fromkeys(self.languages[c] for c in self.tasks if c in self.languages))
        return codes if len(codes) > 1 else ()


def track_spec(track: str) -> LeaderboardSpec:
    if track not in TRACKS:
        raise UnknownTrackError(f"no track '{track}' (tracks: {', '.join(TRACKS)})")
    columns = REGISTRY.columns(track)
    members = {c: REGISTRY.members(track, c) for c in columns}
    return LeaderboardSpec(
        track=track,
        title=TRACK_TITLES[track],
        tasks=columns,
        comm_cost=track == "flowertune_medical",
        protocol=TRACK_PROTOCOLS.get(track, "loglik"),
        members={c: tasks for c, tasks in members.items() if tasks != (c,)},
        languages={c: REGISTRY.task(tasks[0]).language for c, tasks in members.items()},
    )


def language_column(code: str) -> str:
    """The column of a track's average over the columns in one language."""
    return f"avg_{code}"


def _weight(task: str, score: StoredScore) -> float:
    size = score.n if score.n is not None else task_size(task)
    return float(size or 1)


def combined(scores: Mapping[str, StoredScore | None]) -> StoredScore | None:
    """A group's score from its tasks': the mean weighted by questions scored (lm-eval's
    weight_by_size), its standard error from theirs (independent subsets); None when one is
    missing."""
    if any(s is None for s in scores.values()):
        return None
    found = {t: s for t, s in scores.items() if s is not None}
    if len(found) == 1:
        return next(iter(found.values()))
    weights = {t: _weight(t, s) for t, s in found.items()}
    total = sum(weights.values())
    value = sum(weights[t] * s.value for t, s in found.items()) / total
    stderrs = [s.stderr for s in found.values()]
    stderr = None
    if all(e is not None and not math.isnan(e) for e in stderrs):
        stderr = math.sqrt(sum((weights[t] / total * (s.stderr or 0.0)) ** 2
                               for t, s in found.items()))  # fmt: skip
    counts = [s.n for s in found.values()]
    n = sum(c for c in counts if c is not None) if all(c is not None for c in counts) else None
    return StoredScore(value=value, stderr=stderr, n=n)


@dataclass(frozen=True)
class ViewOptions:
    """One view of a track: how to sort and which rows to keep."""

    sort: str = "average"
    descending: bool | None = None  # None: the column's default direction
    search: str = ""
    model_types: tuple[str, ...] = ()
    weight_types: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # origins: evaluated, imported, published
    min_params: float | None = None  # parameter count; a bound drops unknown sizes
    max_params: float | None = None
    include_hidden: bool = False
    complete_only: bool = False
    mixed: bool = False  # one ranking over every protocol (the default: one per protocol)


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
    weight_type: str = ORIGINAL
    subset: tuple[str, ...] = field(default=())  # tasks scored on a subset of their questions
    questions: int | None = None  # questions per task of those (the most any of them has)
    ranking: str | None = None  # the protocol it is ranked among, MIXED, or None: unranked
    recomputed_average: float | None = None  # the task columns' mean, where it reads otherwise

    @property
    def partial_text(self) -> str:
        """What the board says of an entry scored on a subset ("" for the others)."""
        if not self.subset:
            return ""
        count = self.questions
        return f"partial: {count or '?'} question{'' if count == 1 else 's'} per task"

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
            "weight_type": self.weight_type,
            "dtype": self.dtype,
            "parameters": self.parameters,
            "date": self.date,
            "origin": self.origin,
            "source": self.source,
            "protocol": self.protocol,
            "comm_cost_gb": self.comm_cost_gb,
            "average": self.average,
            "recomputed_average": self.recomputed_average,
            "complete": self.complete,
            "ranking": self.ranking,
            "missing": list(self.missing),
            "partial": {
                "questions_per_task": self.questions,
                "tasks": list(self.subset),
                "text": self.partial_text,
            }
            if self.subset
            else None,
            "scores": self.scores,
            "stderrs": self.stderrs,
            "intervals": {t: list(i) if i else None for t, i in self.intervals.items()},
        }


def sort_columns(spec: LeaderboardSpec) -> tuple[str, ...]:
    """Every column a view of this track can sort by."""
    averages = tuple(language_column(code) for code in spec.language_codes)
    return (*COLUMNS, "source", *spec.tasks, *averages)


def default_descending(column: str) -> bool:
    return COLUMNS.get(column, True)  # tasks: bigger first


def interval(value: float, stderr: float | None) -> tuple[float, float] | None:
    if stderr is None or math.isnan(stderr):
        return None
    return max(0.0, value - Z95 * stderr), min(1.0, value + Z95 * stderr)


def percent_text(value: float, digits: int = 2) -> str:
    """A fraction in percent as the board shows it: rounded half up in decimal, as tables are
    (a mean of 21.935 reads 21.94), not in binary floating point (where it is 21.93499...)."""
    if not math.isfinite(value):
        return f"{100 * value:.{digits}f}"
    exact = Decimal(repr(round(100 * value, 9)))  # the binary noise of the sum dropped
    return str(exact.quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP))


def _language_averages(
    spec: LeaderboardSpec, columns: Mapping[str, StoredScore | None]
) -> dict[str, StoredScore | None]:
    averages: dict[str, StoredScore | None] = {}
    for code in spec.language_codes:
        values = [s for c, s in columns.items() if spec.languages.get(c) == code]
        mean = sum(s.value for s in values if s) / len(values) if all(values) else None
        averages[language_column(code)] = None if mean is None else StoredScore(value=mean)
    return averages


def _row(entry: StoredEntry, spec: LeaderboardSpec) -> RankedRow:
    tasks = {t: entry.scores.get(t) for t in spec.task_names}
    missing = tuple(t for t, s in tasks.items() if s is None)
    subset = tuple(t for t, s in tasks.items() if s and s.limit is not None and on_subset(t, s))
    complete = not missing and not subset and bool(spec.tasks)
    columns = {c: combined({t: tasks[t] for t in spec.column_tasks(c)}) for c in spec.tasks}
    average = sum(s.value for s in columns.values() if s) / len(spec.tasks) if complete else None
    averages = (
        _language_averages(spec, columns)
        if complete
        else {language_column(code): None for code in spec.language_codes}
    )
    found = {**tasks, **columns, **averages}
    recomputed = None
    if average is not None and entry.published_average is not None:
        if percent_text(average) != percent_text(entry.published_average):
            recomputed = average
        average = entry.published_average
    counts = [n for t in subset if (n := getattr(tasks[t], "n", None)) is not None]
    return RankedRow(
        rank=None,
        entry_id=entry.entry_id,
        model=entry.model,
        team=entry.team,
        base_model=entry.base_model,
        model_type=entry.model_type or UNKNOWN,
        weight_type=entry.weight_type or ORIGINAL,
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
        subset=subset,
        questions=max(counts) if counts else None,
        recomputed_average=recomputed,
    )


def _with_ranks(rows: list[RankedRow], mixed: bool) -> list[RankedRow]:
    """Competition ranks by average (1, 2, 2, 4) within each protocol (or over all of them
    when `mixed`); partial entries keep None."""
    ranked = sorted(
        (r for r in rows if r.average is not None),
        key=lambda r: (-round(r.average or 0.0, _TIE_DIGITS), r.entry_id),
    )
    ranks: dict[int, tuple[str, int]] = {}
    state: dict[str, tuple[int, float, int]] = {}  # ranking -> rows so far, last key, last rank
    for row in ranked:
        ranking = MIXED if mixed else row.protocol
        count, previous, rank = state.get(ranking, (0, math.nan, 0))
        key = round(row.average or 0.0, _TIE_DIGITS)
        if key != previous:
            rank = count + 1
        state[ranking] = (count + 1, key, rank)
        ranks[row.entry_id] = (ranking, rank)
    return [
        replace(r, ranking=ranks[r.entry_id][0], rank=ranks[r.entry_id][1])
        if r.entry_id in ranks
        else r
        for r in rows
    ]


def ranking_order(spec: LeaderboardSpec, rankings: Iterable[str]) -> list[str]:
    """The rankings of a board in display order: the track's own protocol first."""
    return sorted(set(rankings), key=lambda name: (name != spec.protocol, name))


def _matches(row: RankedRow, view: ViewOptions) -> bool:
    if view.complete_only and not row.complete:
        return False
    if view.search:
        text = " ".join(x for x in (row.model, row.team, row.base_model) if x).casefold()
        if not all(word in text for word in view.search.casefold().split()):
            return False
    if view.model_types and (row.model_type or UNKNOWN) not in view.model_types:
        return False
    if view.weight_types and (row.weight_type or ORIGINAL) not in view.weight_types:
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


def _sorted(
    rows: list[RankedRow], column: str, descending: bool, order: Sequence[str]
) -> list[RankedRow]:
    # Rank order first, so rows that tie on the column stay in rank order (sorts are stable).
    by_rank = sorted(rows, key=lambda r: (r.rank is None, r.rank or 0, r.entry_id))
    present = [r for r in by_rank if r.value(column) is not None]
    absent = [r for r in by_rank if r.value(column) is None]

    def key(row: RankedRow) -> Any:
        value = row.value(column)
        return value.casefold() if isinstance(value, str) else value

    if column == "rank":  # rank 1 first unless reversed; equal to sorting by average
        descending = not descending
    ordered = sorted(present, key=key, reverse=descending) + absent
    section = {name: i for i, name in enumerate(order)}  # each ranking, then the unranked
    return sorted(ordered, key=lambda r: section.get(r.ranking or "", len(section)))


def _check_sort(spec: LeaderboardSpec, view: ViewOptions) -> None:
    if view.sort not in sort_columns(spec):
        raise MedboardError(
            f"cannot sort by '{view.sort}' (columns: {', '.join(sort_columns(spec))})"
        )


def ranked_rows(
    entries: Iterable[StoredEntry], spec: LeaderboardSpec, view: ViewOptions | None = None
) -> list[RankedRow]:
    """Every row of a track (hidden ones only if the view asks), ranked; not filtered."""
    view = view or ViewOptions()
    rows = [_row(e, spec) for e in entries if view.include_hidden or not e.hidden]
    return _with_ranks(rows, view.mixed)


def view_rows(
    rows: Sequence[RankedRow], spec: LeaderboardSpec, view: ViewOptions | None = None
) -> list[RankedRow]:
    """The rows of `ranked_rows` one view shows: filtered, then sorted within each ranking
    (the track's own protocol first), the unranked rows after them."""
    view = view or ViewOptions()
    _check_sort(spec, view)
    kept = [r for r in rows if _matches(r, view)]
    descending = default_descending(view.sort) if view.descending is None else view.descending
    order = ranking_order(spec, (r.ranking for r in rows if r.ranking is not None))
    return _sorted(kept, view.sort, descending, order)


def rank_entries(
    entries: Iterable[StoredEntry], spec: LeaderboardSpec, view: ViewOptions | None = None
) -> list[RankedRow]:
    """The rows of one view of a track: ranked over the whole track, then filtered and sorted."""
    view = view or ViewOptions()
    _check_sort(spec, view)  # before any work
    return view_rows(ranked_rows(entries, spec, view), spec, view)


def ranking_counts(spec: LeaderboardSpec, rows: Iterable[RankedRow]) -> dict[str, int]:
    """How many entries each ranking of a board ranks, in display order."""
    counts = Counter([r.ranking for r in rows if r.ranking is not None])
    return {name: counts[name] for name in ranking_order(spec, counts)}


def mixing_warning(rows: Iterable[RankedRow]) -> str | None:
    """What a view that ranks several protocols together must say (None when it does not)."""
    counts = Counter(r.protocol for r in rows if r.ranking == MIXED)
    if len(counts) < 2:
        return None
    parts = ", ".join(
        f"{name} ({n} {'entry' if n == 1 else 'entries'})" for name, n in sorted(counts.items())
    )
    return (
        f"this ranking mixes evaluation protocols: {parts}; scores from different protocols "
        "are not comparable (the default view ranks each protocol separately)"
    )
