"""The leaderboard view: its state in the URL, and the data the HTML page and its JSON twin share.

The whole view is the query string: `sort`, `desc` (1/0), `q` (search), `type`, `weight_type`,
`precision`, `protocol`, `source` (each repeatable or comma-separated), `min_b`/`max_b` (size
bounds in billions of parameters), `cols` (the columns shown, comma-separated; absent: the
defaults), `complete` (1: hide partial entries), `ranking` (`all`: one ranking over every protocol,
with a warning where that mixes protocols; absent: one ranking per protocol), `page` and
`per_page`; `language` (an ISO 639-1 code: only the columns in that language, with their
average, on a track in several languages). A value that cannot be read is ignored with a
warning, so a hand-edited URL still shows a page.
"""

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from medboard.leaderboard.ranking import (
    MIXED,
    LeaderboardSpec,
    RankedRow,
    StoredEntry,
    ViewOptions,
    default_descending,
    facet_values,
    language_column,
    mixing_warning,
    percent_text,
    ranked_rows,
    ranking_counts,
    sort_columns,
    view_rows,
)
from medboard.web.cells import label, safe_cell, task_terms
from medboard.web.insights import row_uncertainty

PER_PAGE = 100
MAX_PER_PAGE = 1000
BILLION = 1e9


def optional_columns(spec: LeaderboardSpec) -> list[str]:
    """Columns the picker offers, in table order (rank, model and average are always shown)."""
    extra = ["comm_cost_gb"] if spec.comm_cost else []
    averages = [language_column(code) for code in spec.language_codes]
    return [
        "team", *spec.tasks, *averages, *extra, "model_type", "weight_type", "parameters", "dtype",
        "date", "origin",
    ]  # fmt: skip


def column_terms(spec: LeaderboardSpec, column: str) -> dict[str, Any]:
    """A task column's language and its data's license (a group: its first subject's)."""
    return task_terms(spec.column_tasks(column)[0])


def in_language(spec: LeaderboardSpec, columns: Sequence[str], code: str) -> list[str]:
    """The columns, less the task columns and language averages of other languages."""
    own = language_column(code)
    return [
        c
        for c in columns
        if (c not in spec.tasks or spec.languages.get(c) == code)
        and (not c.startswith("avg_") or c == own)
    ]


def default_columns(spec: LeaderboardSpec) -> list[str]:
    """The team is in the federated track's model names; it publishes no sizes, precisions or
    weight types (its entries are all adapters of a base model)."""
    unused = {"team", "parameters", "dtype", "weight_type"} if spec.comm_cost else {"team"}
    return [c for c in optional_columns(spec) if c not in unused]


def _split(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@dataclass(frozen=True)
class BoardQuery:
    sort: str = "average"
    desc: bool | None = None
    q: str = ""
    types: tuple[str, ...] = ()
    weight_types: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    mixed: bool = False  # ranking=all: one ranking over every protocol
    min_b: float | None = None
    max_b: float | None = None
    cols: tuple[str, ...] | None = None  # None: the defaults
    complete: bool = False
    page: int = 1
    per_page: int = PER_PAGE
    language: str = ""  # "": every language

    def options(self) -> ViewOptions:
        return ViewOptions(
            sort=self.sort,
            descending=self.desc,
            search=self.q,
            model_types=self.types,
            weight_types=self.weight_types,
            precisions=self.precisions,
            protocols=self.protocols,
            sources=self.sources,
            min_params=self.min_b * BILLION if self.min_b is not None else None,
            max_params=self.max_b * BILLION if self.max_b is not None else None,
            complete_only=self.complete,
            mixed=self.mixed,
        )

    def params(self, **changes: Any) -> dict[str, Any]:
        """The query parameters of this view (with changes), defaults left out."""
        query = replace(self, **changes)
        params: dict[str, Any] = {}
        if query.sort != "average":
            params["sort"] = query.sort
        if query.desc is not None:
            params["desc"] = int(query.desc)
        if query.q:
            params["q"] = query.q
        for name, values in (
            ("type", query.types),
            ("weight_type", query.weight_types),
            ("precision", query.precisions),
            ("protocol", query.protocols),
            ("source", query.sources),
        ):
            if values:
                params[name] = list(values)
        for name, value in (("min_b", query.min_b), ("max_b", query.max_b)):
            if value is not None:
                params[name] = f"{value:g}"
        if query.cols is not None:
            params["cols"] = ",".join(query.cols)
        if query.complete:
            params["complete"] = 1
        if query.mixed:
            params["ranking"] = MIXED
        if query.page != 1:
            params["page"] = query.page
        if query.per_page != PER_PAGE:
            params["per_page"] = query.per_page
        if query.language:
            params["language"] = query.language
        return params

    def url(self, path: str, **changes: Any) -> str:
        params = self.params(**changes)
        return f"{path}?{urlencode(params, doseq=True)}" if params else path

    def key(self) -> tuple[str, ...]:
        return (urlencode(self.params(), doseq=True),)


def _number(text: str | None, name: str, warnings: list[str]) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or math.isinf(value) or value < 0:
        warnings.append(f"{name} '{text}' is not a size in billions of parameters: ignored")
        return None
    return value


def _integer(text: str | None, name: str, default: int, top: int, warnings: list[str]) -> int:
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        warnings.append(f"{name} '{text}' is not a whole number: ignored")
        return default
    return min(max(value, 1), top)


def _flag(text: str | None) -> bool | None:
    if text is None or text == "":
        return None
    return text.strip().lower() not in ("0", "false", "no", "off")


def parse_query(
    spec: LeaderboardSpec,
    *,
    sort: str | None = None,
    desc: str | None = None,
    q: str | None = None,
    types: Sequence[str] = (),
    weight_types: Sequence[str] = (),
    precisions: Sequence[str] = (),
    protocols: Sequence[str] = (),
    sources: Sequence[str] = (),
    min_b: str | None = None,
    max_b: str | None = None,
    cols: Sequence[str] | None = None,
    complete: str | None = None,
    ranking: str | None = None,
    page: str | None = None,
    per_page: str | None = None,
    language: str | None = None,
) -> tuple[BoardQuery, list[str]]:
    """The view a query string asks for, and warnings about what was ignored."""
    warnings: list[str] = []
    code = (language or "").strip().lower()
    if code and code not in spec.language_codes:
        offered = ", ".join(spec.language_codes) or "none: this track has one language"
        warnings.append(f"language '{language}' is not one of this track's ({offered}): ignored")
        code = ""
    column = (sort or "average").strip()
    if column not in sort_columns(spec):
        warnings.append(f"cannot sort by '{column}': sorted by average")
        column = "average"
    chosen: tuple[str, ...] | None = None
    if cols is not None and len(cols) > 0:
        offered = optional_columns(spec)
        wanted = _split(cols)
        unknown = [c for c in wanted if c not in offered and c != "source"]
        if unknown:
            warnings.append(f"unknown column(s) {', '.join(unknown)}: ignored")
        wanted = ["origin" if c == "source" else c for c in wanted]
        chosen = tuple(c for c in offered if c in wanted)
        if list(chosen) == default_columns(spec):
            chosen = None  # the defaults: a shorter URL
    low = _number(min_b, "min_b", warnings)
    high = _number(max_b, "max_b", warnings)
    chosen_ranking = (ranking or "").strip().lower()
    if chosen_ranking not in ("", "protocol", MIXED):
        warnings.append(f"ranking '{ranking}' is not 'protocol' or '{MIXED}': ranked per protocol")
    query = BoardQuery(
        sort=column,
        desc=_flag(desc),
        q=(q or "").strip()[:200],
        types=tuple(_split(types)),
        weight_types=tuple(_split(weight_types)),
        precisions=tuple(_split(precisions)),
        protocols=tuple(_split(protocols)),
        sources=tuple(_split(sources)),
        min_b=low,
        max_b=high,
        cols=chosen,
        complete=bool(_flag(complete)),
        mixed=chosen_ranking == MIXED,
        page=_integer(page, "page", 1, 1_000_000, warnings),
        per_page=_integer(per_page, "per_page", PER_PAGE, MAX_PER_PAGE, warnings),
        language=code,
    )
    return query, warnings


def _with_uncertainty(row: dict[str, Any], found: dict[str, Any] | None) -> dict[str, Any]:
    ranked = row["rank"] is not None  # a partial entry has no rank, nor a rank interval
    row["rank_interval"] = row_uncertainty(found, row["entry_id"]) if found and ranked else None
    return row


def _sections(spec: LeaderboardSpec, ranked: list[RankedRow], mixed: bool) -> list[dict[str, Any]]:
    """The parts of the board, in display order: each ranking, then the unranked entries."""
    sections: list[dict[str, Any]] = [
        {"ranking": name, "ranked": count, "own": name == spec.protocol}
        for name, count in ranking_counts(spec, ranked).items()
    ]
    if mixed:
        for section in sections:
            section["protocols"] = sorted({r.protocol for r in ranked if r.ranking == MIXED})
    unranked = sum(1 for r in ranked if r.ranking is None)
    if unranked:
        sections.append({"ranking": None, "ranked": 0, "unranked": unranked, "own": False})
    return sections


def board_data(
    spec: LeaderboardSpec,
    entries: list[StoredEntry],
    query: BoardQuery,
    warnings: list[str],
    uncertainty: dict[str, Any] | None = None,
    ranked: list[RankedRow] | None = None,
) -> dict[str, Any]:
    """What the leaderboard page shows; the JSON twin returns exactly this.

    `uncertainty` (medboard.web.insights.board_uncertainty) adds each ranked row's rank interval
    among the entries scored on the same questions, and whether it is told apart from the leader.
    A view that ranks several protocols together (`ranking=all`) says so in its warnings.
    `ranked`: `ranked_rows` of `entries` for this view, where the caller keeps them
    (`BoardCache.ranked`), so that a view (a search, say) does not rank the whole track again.
    """
    options = query.options()
    ranked = ranked_rows(entries, spec, options) if ranked is None else ranked
    rows = view_rows(ranked, spec, options)
    mixing = mixing_warning(ranked) if query.mixed else None
    warnings = [*warnings, mixing] if mixing else list(warnings)
    visible = [e for e in entries if not e.hidden]
    pages = max(1, math.ceil(len(rows) / query.per_page))
    page = min(query.page, pages)
    shown = rows[(page - 1) * query.per_page : page * query.per_page]
    columns = list(query.cols) if query.cols is not None else default_columns(spec)
    if query.language:
        columns = in_language(spec, columns, query.language)
    descending = default_descending(query.sort) if query.desc is None else query.desc
    path = f"/leaderboard/{spec.track}"
    return {
        "track": spec.track,
        "title": spec.title,
        "metric": spec.metric,
        "protocol": spec.protocol,
        "tasks": [{"name": t, "label": label(t)} for t in spec.tasks],
        "terms": {c: column_terms(spec, c) for c in spec.tasks},
        "languages": [
            {"code": code, "columns": [c for c in spec.tasks if spec.languages.get(c) == code]}
            for code in spec.language_codes
        ],
        "columns": columns,
        "available_columns": [{"name": c, "label": label(c)} for c in optional_columns(spec)],
        "view": {
            "sort": query.sort,
            "desc": descending,
            "q": query.q,
            "type": list(query.types),
            "weight_type": list(query.weight_types),
            "precision": list(query.precisions),
            "protocol": list(query.protocols),
            "source": list(query.sources),
            "ranking": MIXED if query.mixed else "protocol",
            "min_b": query.min_b,
            "max_b": query.max_b,
            "cols": columns,
            "complete": query.complete,
            "page": page,
            "per_page": query.per_page,
            "language": query.language,
        },
        "facets": facet_values(visible),
        "entries": len(visible),
        "ranked": sum(1 for r in ranked if r.rank is not None),
        "sections": _sections(spec, ranked, query.mixed),
        "matching": len(rows),
        "page": page,
        "pages": pages,
        "rows": [_with_uncertainty(r.to_json(), uncertainty) for r in shown],
        "uncertainty": None
        if uncertainty is None
        else {
            "method": uncertainty["method"],
            "compared": uncertainty["compared"],
            "leader": uncertainty["leader"],
        },
        "warnings": warnings,
        "links": {
            "html": query.url(path),
            "json": query.url(f"/api{path}"),
            "csv": query.url(f"{path}.csv", page=1, per_page=PER_PAGE),
        },
    }


def rows_csv(rows: list[RankedRow], spec: LeaderboardSpec, columns: Sequence[str]) -> str:
    """A leaderboard as CSV: scores in percent (as leaderboards publish them), 2 decimals."""
    extra = [c for c in columns if c not in spec.tasks]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    notes = ["ranking", "partial", "recomputed_average"]
    writer.writerow(["rank", "entry_id", "model", "average", *spec.tasks, *extra, *notes])

    def percent(value: float | None) -> str:
        return "" if value is None else percent_text(value)

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        return safe_cell(value) if isinstance(value, str) else value

    for row in rows:
        writer.writerow(
            [
                "" if row.rank is None else row.rank,
                row.entry_id,
                cell(row.model),
                percent(row.average),
                *(percent(row.scores[t]) for t in spec.tasks),
                *(cell(row.value(c)) for c in extra),
                row.ranking or "",
                row.partial_text,
                percent(row.recomputed_average),
            ]
        )
    return out.getvalue()
