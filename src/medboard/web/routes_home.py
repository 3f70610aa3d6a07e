"""The landing page: what the board holds now, at a glance, and its JSON twin.

A board is rarely full on its first day: `medboard serve --submit` opens with the published
FlowerTune table on one track and the demo model still in the queue for another. So `/` shows
the queue's pending and running jobs (with the whole job's progress), then each track that has
entries with its first rows, then the tracks still empty, each linking to its full leaderboard.
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from medboard.leaderboard.ranking import TRACKS, ViewOptions, track_spec, view_rows
from medboard.queue.submissions import list_submissions
from medboard.web.cache import BoardCache
from medboard.web.rendering import render
from medboard.web.routes_queue import submission_json

router = APIRouter()
TOP = 5  # rows of each track on the landing page
ACTIVE = ("running", "pending")


def _track(cache: BoardCache, track: str) -> dict[str, Any]:
    """One track: its entry counts and the first rows of its own ranking."""
    spec = track_spec(track)
    ranked = cache.ranked(spec)
    rows = view_rows(ranked, spec, ViewOptions())
    first = next((r.ranking for r in rows if r.rank is not None), None)
    top = [r for r in rows if r.rank is not None and r.ranking == first][:TOP]
    return {
        "track": track,
        "title": spec.title,
        "protocol": spec.protocol,
        "entries": sum(1 for e in cache.entries(track) if not e.hidden),
        "ranked": sum(1 for r in ranked if r.rank is not None),
        "comm_cost": spec.comm_cost,
        "top": [
            {
                "rank": r.rank,
                "entry_id": r.entry_id,
                "model": r.model,
                "team": r.team,
                "average": r.average,
                "comm_cost_gb": r.comm_cost_gb,
                "origin": r.origin,
            }
            for r in top
        ],
        "links": {"page": f"/leaderboard/{track}", "json": f"/api/leaderboard/{track}"},
    }


def overview(request: Request) -> dict[str, Any]:
    """The queue's pending and running jobs (running first), then every track."""
    cache: BoardCache = request.app.state.cache
    jobs = list_submissions(request.app.state.database)
    active = sorted(
        (j for j in jobs if j.status in ACTIVE), key=lambda j: (ACTIVE.index(j.status), j.id)
    )
    tracks = [_track(cache, t) for t in TRACKS]
    return {
        "queue": {
            "active": [submission_json(j) for j in active],
            "counts": {s: sum(1 for j in jobs if j.status == s) for s in ACTIVE},
            "links": {"page": "/queue", "json": "/api/queue"},
        },
        "tracks": tracks,
        "entries": sum(t["entries"] for t in tracks),
        "links": {"about": "/about", "submit": "/submit", "api": "/api"},
    }


@router.get("/api/overview", tags=["overview"])
def overview_json(request: Request) -> dict[str, Any]:
    """The landing page's data: the queue's pending and running jobs with their progress, and
    each track's entry counts and first rows (scores as fractions)."""
    return overview(request)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home(request: Request) -> HTMLResponse:
    data = overview(request)
    return render(request, "home.html", {"data": data, "title": "Medical LLM leaderboard"})
