"""The pages' templates: the Jinja2 environment (its filters and globals) and rendering.

Apart from app.py so that the routes render pages without importing the app that includes them.
The templates object lives on `app.state.templates` (create_app sets it from make_templates).
"""

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from medboard import __version__
from medboard.leaderboard.ranking import TRACK_TITLES, TRACKS
from medboard.web import filters, jobs

TEMPLATES = Path(__file__).parent / "templates"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.autoescape = True  # every template, whatever its name
    env.filters.update(
        pct=filters.pct,
        interval=filters.interval_text,
        params=filters.human_params,
        dash=filters.dash,
        gb=filters.gigabytes,
        prob=filters.prob,
        progress=filters.progress_text,
        eta=filters.eta_text,
        when=jobs.time_tag,
        job_left=jobs.job_left_text,
    )
    env.globals.update(tracks=[(t, TRACK_TITLES[t]) for t in TRACKS], version=__version__)
    return templates


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, template, context, status_code=status_code, headers=headers
    )


def render_text(request: Request, template: str, context: dict[str, Any]) -> str:
    """A page as text (cacheable: the templates use no request-specific helpers)."""
    templates: Jinja2Templates = request.app.state.templates
    return templates.get_template(template).render(context)
