"""The web app: server-rendered pages, each with a JSON twin, on one results database.

`create_app(database)` builds a FastAPI app; `medboard serve` runs it with uvicorn. Pages are
Jinja2 templates that work without JavaScript (forms and links carry the whole view in the URL);
`static/board.js` only enhances them. Plots are SVG drawn on the server (`plots.py`).

Routes: `/` the landing page (the queue's current jobs, each track's first rows);
`/leaderboard/{track}` (+ `.csv`), `/compare` (+ `.csv`), `/model/{id}` with its run downloads
and sample CSV, `/submit`, `/queue` (+ `.csv`), `/about`; the JSON twins live under `/api/...`
(`/api` lists them); the OpenAPI docs at `/docs` (Swagger UI served from
`static/swagger-ui`, so the page works offline). GETs of rendered leaderboard views are answered
from memory before routing (`fastpath.py`).
"""

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from medboard import __version__
from medboard.queue.submissions import submit
from medboard.results.db import Database
from medboard.web import (
    routes_about,
    routes_admin,
    routes_board,
    routes_home,
    routes_model,
    routes_queue,
)
from medboard.web.cache import BoardCache
from medboard.web.fastpath import CachedViews
from medboard.web.rendering import make_templates, render

HERE = Path(__file__).parent
SWAGGER_UI = "/static/swagger-ui"  # swagger-ui-dist, vendored: see static/swagger-ui/README.md


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})  # a 405's Allow, say
    if wants_json(request):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
    return render(
        request,
        "error.html",
        {"title": title, "message": exc.detail, "status": exc.status_code},
        status_code=exc.status_code,
        headers=headers,
    )


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
        for e in exc.errors()
    ]
    in_path = any(e.get("loc", ("",))[0] == "path" for e in exc.errors())
    status = 404 if in_path else 422
    if wants_json(request):
        errors = [{k: e.get(k) for k in ("type", "loc", "msg")} for e in exc.errors()]
        detail = "not found: " + "; ".join(problems) if in_path else errors
        # ASCII JSON: what was sent may hold text that UTF-8 cannot encode (lone surrogates)
        body = json.dumps({"detail": detail}, ensure_ascii=True, default=str)
        return Response(body, status_code=status, media_type="application/json")
    return render(
        request,
        "error.html",
        {
            "title": "Not found" if in_path else "Bad request",
            "message": "; ".join(problems),
            "status": status,
        },
        status_code=status,
    )


def create_app(database: Database, admin_token: str | None = None) -> FastAPI:
    """The leaderboard app on `database` (migrated already: see `open_database`)."""
    app = FastAPI(
        title="medboard",
        version=__version__,
        description="An open, self-hostable medical LLM leaderboard. Every page has a JSON "
        "twin under /api; scores are fractions (0-1).",
        docs_url=None,  # /docs below, on the vendored Swagger UI (no CDN: works offline)
        redoc_url=None,
    )
    app.state.database = database
    app.state.admin_token = admin_token  # routes_admin refuses every action without one
    app.state.cache = BoardCache(database)
    app.add_middleware(CachedViews, cache=app.state.cache)  # cached views, before routing
    app.state.templates = make_templates()
    app.state.submit = submit  # tests put a submit with a stub model check here
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/api", tags=["meta"])
    def api_index() -> dict[str, Any]:
        """The JSON endpoints: each page's twin (`/api` + the page's path), the API's schema and
        its browsable description."""
        paths = app.openapi()["paths"]
        endpoints = [
            {"path": path, "methods": sorted(m.upper() for m in operations), "summary": summary}
            for path, operations in paths.items()
            if path.startswith("/api/")
            for summary in [next(iter(operations.values())).get("summary", "")]
        ]
        return {"endpoints": endpoints, "openapi": app.openapi_url, "docs": "/docs"}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge from validator.swagger.io
        )

    app.include_router(routes_home.router)
    app.include_router(routes_board.router)
    app.include_router(routes_model.router)
    app.include_router(routes_queue.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_about.router)
    return app
