"""Leaderboard and comparison pages, their JSON twins and CSV exports."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from medboard.leaderboard.ranking import (
    TRACKS,
    LeaderboardSpec,
    RankedRow,
    UnknownTrackError,
    rank_entries,
    track_spec,
    view_rows,
)
from medboard.web.board import BoardQuery, board_data, optional_columns, parse_query, rows_csv
from medboard.web.cache import BoardCache
from medboard.web.cells import label
from medboard.web.fastpath import CachedBody, url_key
from medboard.web.insights import cached_board_uncertainty, paired_against_first
from medboard.web.plots import Point, Series, grouped_bars, scatter
from medboard.web.rendering import render_text

router = APIRouter()
MAX_COMPARE = 8
DEFAULT_COMPARE = 5
_ID = re.compile(r"^[0-9]{1,12}$")


@dataclass(frozen=True)
class RawQuery:
    """The leaderboard's query parameters as sent; `parse_query` reads them leniently."""

    sort: str | None
    desc: str | None
    q: str | None
    type: list[str]
    weight_type: list[str]
    precision: list[str]
    protocol: list[str]
    source: list[str]
    min_b: str | None
    max_b: str | None
    cols: list[str] | None
    complete: str | None
    ranking: str | None
    page: str | None
    per_page: str | None
    language: str | None = None

    def parse(self, spec: LeaderboardSpec) -> tuple[BoardQuery, list[str]]:
        return parse_query(
            spec,
            sort=self.sort,
            desc=self.desc,
            q=self.q,
            types=self.type,
            weight_types=self.weight_type,
            precisions=self.precision,
            protocols=self.protocol,
            sources=self.source,
            min_b=self.min_b,
            max_b=self.max_b,
            cols=self.cols,
            complete=self.complete,
            ranking=self.ranking,
            page=self.page,
            per_page=self.per_page,
            language=self.language,
        )


def raw_query(
    sort: Annotated[str | None, Query(description="column: average, a task, model, ...")] = None,
    desc: Annotated[str | None, Query(description="1: descending, 0: ascending")] = None,
    q: Annotated[str | None, Query(description="words in model, team or base model")] = None,
    type: Annotated[list[str] | None, Query(description="model type(s)")] = None,
    weight_type: Annotated[
        list[str] | None, Query(description="weight type(s): original, adapter, merged")
    ] = None,
    precision: Annotated[list[str] | None, Query(description="dtype(s)")] = None,
    protocol: Annotated[
        list[str] | None, Query(description="protocol(s): loglik, flowertune, generative, cot")
    ] = None,
    source: Annotated[list[str] | None, Query(description="evaluated/imported/published")] = None,
    min_b: Annotated[str | None, Query(description="at least this many billion params")] = None,
    max_b: Annotated[str | None, Query(description="at most this many billion params")] = None,
    cols: Annotated[list[str] | None, Query(description="columns shown, comma-separated")] = None,
    complete: Annotated[str | None, Query(description="1: hide partial entries")] = None,
    ranking: Annotated[
        str | None,
        Query(
            description="protocol (default): one ranking per protocol; all: one for every protocol"
        ),
    ] = None,
    page: Annotated[str | None, Query()] = None,
    per_page: Annotated[str | None, Query()] = None,
    language: Annotated[
        str | None, Query(description="ISO 639-1 code: only that language's columns")
    ] = None,
) -> RawQuery:
    return RawQuery(
        sort=sort,
        desc=desc,
        q=q,
        type=type or [],
        weight_type=weight_type or [],
        precision=precision or [],
        protocol=protocol or [],
        source=source or [],
        min_b=min_b,
        max_b=max_b,
        cols=cols,
        complete=complete,
        ranking=ranking,
        page=page,
        per_page=per_page,
        language=language,
    )


Raw = Annotated[RawQuery, Depends(raw_query)]
# The spec lists the tracks; another name is answered 404 by the route (not 422).
TrackPath = Annotated[
    str, PathParam(description="a leaderboard track", json_schema_extra={"enum": list(TRACKS)})
]


def spec_or_404(track: str) -> LeaderboardSpec:
    try:
        return track_spec(track)
    except UnknownTrackError as exc:
        raise HTTPException(404, str(exc)) from None


def _cache(request: Request) -> BoardCache:
    return request.app.state.cache


def _board(request: Request, track: str, raw: RawQuery) -> tuple[dict[str, Any], BoardQuery]:
    spec = spec_or_404(track)
    query, warnings = raw.parse(spec)
    cache = _cache(request)
    # Not kept apart: the rendered page and JSON are, and the ranking behind them (cache.ranked).
    ranked = cache.ranked(spec, query.options())
    uncertainty = cached_board_uncertainty(cache, spec)
    data = board_data(spec, cache.entries(track), query, warnings, uncertainty, ranked)
    return data, query


def _all_rows(request: Request, spec: LeaderboardSpec, query: BoardQuery) -> list[RankedRow]:
    options = query.options()
    return view_rows(_cache(request).ranked(spec, options), spec, options)


def board_plots(spec: LeaderboardSpec, rows: list[RankedRow]) -> list[Any]:
    """Plots of the first ranking of the view (the track's own protocol, when it has entries):
    scores of other protocols are not comparable, so they are not drawn together."""
    plots = []
    first = next((r.ranking for r in rows if r.ranking is not None), None)
    ranked = [r for r in rows if r.average is not None and r.ranking == first]
    by_size = [
        Point(r.parameters, r.average, r.model, f"/model/{r.entry_id}")
        for r in ranked
        if r.parameters and r.average is not None
    ]
    axis = "parameters (log scale)"
    plots.append(scatter(by_size, "Average against parameters", axis, "average (%)", True))
    if spec.comm_cost:
        by_cost = [
            Point(r.comm_cost_gb, r.average, r.model, f"/model/{r.entry_id}")
            for r in ranked
            if r.comm_cost_gb and r.average is not None
        ]
        plots.append(
            scatter(
                by_cost,
                "Average against communication cost",
                "communication cost, GB (log scale)",
                "average (%)",
                True,
            )
        )
    return [p for p in plots if p is not None]


def _canonical(request: Request, query: BoardQuery, warnings: list[str]) -> str | None:
    """The clean URL of a view submitted by the form (empty fields, repeated cols), if other."""
    if warnings:
        return None
    target = query.url(request.url.path)
    sent = sorted(parse_qsl(request.url.query, keep_blank_values=True))
    wanted = sorted(parse_qsl(target.partition("?")[2], keep_blank_values=True))
    return target if sent != wanted else None


@router.get("/leaderboard/{track}.csv", tags=["leaderboard"])
def leaderboard_csv(request: Request, track: TrackPath, raw: Raw) -> Response:
    """Every row of the view (all pages), with all columns; scores in percent."""
    spec = spec_or_404(track)
    query, _ = raw.parse(spec)
    rows = _all_rows(request, spec, query)
    text = rows_csv(rows, spec, optional_columns(spec))
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{track}.csv"'},
    )


def _rendered(
    request: Request, key: tuple[str, ...], media_type: str, render: Callable[[], bytes]
) -> Response:
    """A view rendered once per database state, kept under its URL for the fast path too."""
    cache = _cache(request)
    generation = cache.generation()
    body = cache.view(key, lambda: CachedBody.of(render(), media_type))
    cache.remember(url_key(request.scope["path"], request.scope["query_string"]), body, generation)
    return body.response(request.headers)


@router.get(
    "/api/leaderboard/{track}",
    tags=["leaderboard"],
    response_model=dict[str, Any],
    responses={304: {"description": "Not modified (If-None-Match)"}},
)
def leaderboard_json(request: Request, track: TrackPath, raw: Raw) -> Response:
    """The leaderboard page's data: the rows of one page of the view, scores as fractions."""
    spec = spec_or_404(track)
    query, warnings = raw.parse(spec)

    def render() -> bytes:
        data, _ = _board(request, track, raw)
        return bytes(JSONResponse(jsonable_encoder(data)).body)

    return _rendered(request, ("json", track, *query.key(), *warnings), "application/json", render)


@router.get("/leaderboard/{track}", response_class=HTMLResponse, tags=["pages"])
def leaderboard_page(request: Request, track: TrackPath, raw: Raw) -> Response:
    """The leaderboard of one track: sortable, filterable, with a column picker."""
    spec = spec_or_404(track)
    query, warnings = raw.parse(spec)
    target = _canonical(request, query, warnings)
    if target is not None:
        return RedirectResponse(target, status_code=302)

    def render() -> bytes:
        data, _ = _board(request, track, raw)
        context = {
            "data": data,
            "query": query,
            "path": f"/leaderboard/{track}",
            "label": label,
            "plots": board_plots(spec, _all_rows(request, spec, query)),
            "title": f"{spec.title} leaderboard",
        }
        return render_text(request, "leaderboard.html", context).encode("utf-8")

    key = ("html", track, *query.key(), *warnings)
    return _rendered(request, key, "text/html; charset=utf-8", render)


def _ids(values: list[str] | None) -> list[int]:
    ids = []
    for value in values or []:
        for part in value.split(","):
            if _ID.match(part.strip()) and int(part) not in ids:
                ids.append(int(part))
    return ids[:MAX_COMPARE]


def compare_data(request: Request, track: str, ids: list[int]) -> dict[str, Any]:
    """Selected entries of one track side by side (default: the top of the ranking)."""
    spec = spec_or_404(track)
    rows = rank_entries(_cache(request).entries(track), spec)
    first = next((r.ranking for r in rows if r.ranking is not None), None)  # own protocol's
    chosen = (
        [r for i in ids for r in rows if r.entry_id == i]
        if ids
        else [r for r in rows if r.rank is not None and r.ranking == first][:DEFAULT_COMPARE]
    )
    return {
        "track": track,
        "title": spec.title,
        "tasks": [{"name": t, "label": label(t)} for t in spec.tasks],
        "ids": [r.entry_id for r in chosen],
        "rows": [r.to_json() for r in chosen],
        "missing": [i for i in ids if i not in {r.entry_id for r in chosen}],
        "paired": _paired(request, [r.entry_id for r in chosen], spec.task_names),
    }


def _paired(request: Request, ids: list[int], tasks: tuple[str, ...]) -> list[dict[str, Any]]:
    cache = _cache(request)

    def build() -> list[dict[str, Any]]:
        with cache.database.session() as session:
            return paired_against_first(session, ids, tasks)

    return cache.view(("paired", *ids), build)


TrackParam = Annotated[
    str, Query(description="the track of the entries", json_schema_extra={"enum": list(TRACKS)})
]
IdsParam = Annotated[list[str] | None, Query(description="entry ids (at most 8)")]


@router.get("/api/compare", tags=["leaderboard"])
def compare_json(
    request: Request, track: TrackParam = "open_medical", ids: IdsParam = None
) -> dict[str, Any]:
    """Two or more entries side by side: per-task scores with 95% intervals."""
    return compare_data(request, track, _ids(ids))


@router.get("/compare.csv", tags=["leaderboard"])
def compare_csv(
    request: Request, track: TrackParam = "open_medical", ids: IdsParam = None
) -> Response:
    """The comparison as CSV, scores in percent."""
    spec = spec_or_404(track)
    chosen = set(compare_data(request, track, _ids(ids))["ids"])
    rows = [r for r in rank_entries(_cache(request).entries(track), spec) if r.entry_id in chosen]
    return Response(
        rows_csv(rows, spec, optional_columns(spec)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="compare_{track}.csv"'},
    )


@router.get("/compare", response_class=HTMLResponse, tags=["pages"])
def compare_page(
    request: Request, track: TrackParam = "open_medical", ids: IdsParam = None
) -> Response:
    """Two or more entries side by side, with their paired differences."""
    data = compare_data(request, track, _ids(ids))
    groups = [t["label"] for t in data["tasks"]] + ["Average"]
    series = [
        Series(
            row["model"],
            [row["scores"][t["name"]] for t in data["tasks"]] + [row["average"]],
            [tuple(row["intervals"][t["name"]] or ()) or None for t in data["tasks"]],
        )
        for row in data["rows"]
    ]
    plot = grouped_bars(groups, series, "Per-task comparison")
    context = {"data": data, "plot": plot, "title": f"Compare models: {data['title']}"}
    return HTMLResponse(render_text(request, "compare.html", context))
