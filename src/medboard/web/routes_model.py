"""The model page (one leaderboard entry), its JSON twin and its downloads.

The page and its JSON twin are rendered once per view (entry, sample task, page, filter) and
database state, and kept in the `BoardCache` (its "pages" group, so that visits to many model
pages never push the leaderboard's own views out) under the URL asked for, which the fast path
(`fastpath.py`) then answers from memory. What a render reads is a fixed number of queries (the
entry, its scores, its runs); the entry's rank comes from a table of the track's ranks built once
per database state, not from ranking the whole track again.
"""

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)

from medboard.leaderboard.ranking import TRACKS, track_spec
from medboard.results.schema import json_safe
from medboard.tasks import REGISTRY
from medboard.web.cache import PAGES, BoardCache
from medboard.web.fastpath import CachedBody, url_key
from medboard.web.insights import cached_board_uncertainty, entry_insights, row_uncertainty
from medboard.web.model_data import (
    MAX_SAMPLES_PER_PAGE,
    SAMPLES_PER_PAGE,
    NotFoundError,
    SampleQuery,
    download_license,
    entry_runs,
    model_data,
    read_samples,
    run_for,
    samples_csv,
    samples_jsonl,
)
from medboard.web.plots import Series, grouped_bars
from medboard.web.rendering import render_text
from medboard.web.sample_text import private_task

router = APIRouter()

# Ids beyond a 32-bit integer cannot exist (and SQLite cannot even compare them): not found.
EntryId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
TaskParam = Annotated[str | None, Query(max_length=100, description="task of the sample table")]
PageParam = Annotated[int, Query(ge=1, le=1_000_000)]
PerPageParam = Annotated[int, Query(ge=1, le=MAX_SAMPLES_PER_PAGE)]
OnlyParam = Annotated[str, Query(pattern="^(|correct|wrong)$", description="correct or wrong")]
# The spec lists the tasks; a run of another is answered 404 by the route (not 422).
RunTask = Annotated[
    str,
    PathParam(
        description="a task of the entry",
        json_schema_extra={"enum": [t.name for t in REGISTRY.tasks()]},
    ),
]


def _ranks(cache: BoardCache, track: str) -> dict[str, Any]:
    """The track's default ranking as a table: entry id -> (rank, average, ranking), and how
    many entries each ranking (protocol) ranks; built once per database state."""

    def build() -> dict[str, Any]:
        rows = cache.ranked(track_spec(track))
        return {
            "of": Counter(r.ranking for r in rows if r.rank is not None),
            "rows": {r.entry_id: (r.rank, r.average, r.ranking) for r in rows},
        }

    return cache.view(("ranks", track), build)


def _data(
    request: Request, entry_id: int, task: str | None, page: int, per_page: int, only: str
) -> dict[str, Any]:
    database = request.app.state.database
    cache: BoardCache = request.app.state.cache
    try:
        with database.session() as session:
            runs = entry_runs(session, entry_id)
            data = model_data(session, entry_id, SampleQuery(task, page, per_page, only), runs)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    track = data["entry"]["track"]
    insights = cache.view(("insights", entry_id), lambda: entry_insights(track, runs), PAGES)
    data["insights"] = insights
    for score in data["scores"]:  # bootstrap intervals where the questions are at hand
        acc = score["metrics"].get("acc")
        found = insights["intervals"].get(score["task"])
        if acc is not None and found is not None:
            acc["interval"] = [found["low"], found["high"]]
            acc["interval_method"] = "bootstrap"
    data["rank"] = None
    if track in TRACKS:
        spec = track_spec(track)
        ranks = _ranks(cache, track)
        rank, average, ranking = ranks["rows"].get(entry_id, (None, None, None))
        data["rank"] = {
            "rank": rank,
            "of": ranks["of"][ranking] if rank is not None else sum(ranks["of"].values()),
            "ranking": ranking,
            "average": average,
            "uncertainty": row_uncertainty(cached_board_uncertainty(cache, spec), entry_id),
        }
    return data


def _rendered(
    request: Request, key: tuple[Any, ...], media_type: str, render: Callable[[], bytes]
) -> Response:
    """A view rendered once per database state, kept under its URL for the fast path too."""
    cache: BoardCache = request.app.state.cache
    generation = cache.generation()
    body = cache.view(key, lambda: CachedBody.of(render(), media_type), PAGES)
    where = url_key(request.scope["path"], request.scope["query_string"])
    cache.remember(where, body, generation, PAGES)
    return body.response(request.headers)


@router.get(
    "/api/model/{entry_id}",
    tags=["model"],
    response_model=dict[str, Any],
    responses={304: {"description": "Not modified (If-None-Match)"}},
)
def model_json(
    request: Request,
    entry_id: EntryId,
    task: TaskParam = None,
    page: PageParam = 1,
    per_page: PerPageParam = SAMPLES_PER_PAGE,
    only: OnlyParam = "",
) -> Response:
    """One entry: scores with 95% intervals, per-subject scores, provenance, a page of samples
    (with the question and option texts where the dataset's license allows)."""

    def render() -> bytes:
        data = _data(request, entry_id, task, page, per_page, only)
        return bytes(JSONResponse(jsonable_encoder(data)).body)

    key = ("model-json", entry_id, task, page, per_page, only)
    return _rendered(request, key, "application/json", render)


@router.get("/model/{entry_id}", response_class=HTMLResponse, tags=["pages"])
def model_page(
    request: Request,
    entry_id: EntryId,
    task: TaskParam = None,
    page: PageParam = 1,
    per_page: PerPageParam = SAMPLES_PER_PAGE,
    only: OnlyParam = "",
) -> Response:
    """One entry: scores with intervals, provenance, its runs and a page of samples."""

    def render() -> bytes:
        data = _data(request, entry_id, task, page, per_page, only)
        accs = [(s["label"], s["metrics"].get("acc")) for s in data["scores"]]
        accs = [(name, acc) for name, acc in accs if acc is not None]
        plot = grouped_bars(
            [name for name, _ in accs],
            [
                Series(
                    data["model"]["name"],
                    [acc["value"] for _, acc in accs],
                    [tuple(acc["interval"]) if acc["interval"] else None for _, acc in accs],
                )
            ],
            "Accuracy per task with 95% intervals",
        )
        base = f"/model/{entry_id}"
        context = {"data": data, "plot": plot, "title": data["model"]["name"], "base": base}
        return render_text(request, "model.html", context).encode("utf-8")

    key = ("model-html", entry_id, task, page, per_page, only)
    return _rendered(request, key, "text/html; charset=utf-8", render)


def _run(request: Request, entry_id: int, task: str) -> Any:
    try:
        with request.app.state.database.session() as session:
            return run_for(session, entry_id, task)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/model/{entry_id}/runs/{task}/result.json", tags=["model"])
def run_result(request: Request, entry_id: EntryId, task: RunTask) -> JSONResponse:
    """The raw result record of the run behind a task's score."""
    run = _run(request, entry_id, task)
    return JSONResponse(
        json_safe(run.result or {}),  # runs recorded before record.py wrote nan as null
        headers={"Content-Disposition": f'attachment; filename="{entry_id}_{task}_result.json"'},
    )


@router.get("/model/{entry_id}/runs/{task}/samples.jsonl", tags=["model"])
def run_samples(request: Request, entry_id: EntryId, task: RunTask) -> FileResponse:
    """The run's samples as recorded: one JSON object per question."""
    if private_task(task):
        raise HTTPException(404, f"{task} is a private exam: its samples are not served")
    run = _run(request, entry_id, task)
    if read_samples(run.samples_path) is None:
        raise HTTPException(404, f"the samples of {task} for entry {entry_id} are not kept here")
    license = download_license(task)
    filename = f"{entry_id}_{task}_samples.jsonl"
    if license is None:
        return FileResponse(
            Path(run.samples_path), media_type="application/x-ndjson", filename=filename
        )
    return StreamingResponse(  # each record carries the data's license
        samples_jsonl(run.samples_path, license),
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Data-License": license,
        },
    )


@router.get("/model/{entry_id}/runs/{task}/samples.csv", tags=["model"])
def run_samples_csv(request: Request, entry_id: EntryId, task: RunTask) -> Response:
    """The sample table of a task as CSV (every question, choice probabilities in percent)."""
    if private_task(task):
        raise HTTPException(404, f"{task} is a private exam: its samples are not served")
    run = _run(request, entry_id, task)
    records = read_samples(run.samples_path)
    if records is None:
        raise HTTPException(404, f"the samples of {task} for entry {entry_id} are not kept here")
    license = download_license(task)
    headers = {"Content-Disposition": f'attachment; filename="{entry_id}_{task}_samples.csv"'}
    return Response(
        samples_csv(records, license),
        media_type="text/csv; charset=utf-8",
        headers={**headers, "X-Data-License": license} if license else headers,
    )
