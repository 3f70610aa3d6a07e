"""The About page and its JSON twin: what each track measures and how, the protocol versions,
how to cite, the data sources with their licenses, and where the documentation is.

Everything comes from the task registry (medboard.tasks) and the protocols
(medboard.tasks.protocols), so that a benchmark added there shows here with nothing to edit.
The documentation's address is `$MEDBOARD_DOCS_URL` where the operator has published the site;
without it the page points to `docs/` in the source tree.
"""

import os
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from medboard import __version__
from medboard.leaderboard.ranking import TRACKS, track_spec
from medboard.tasks import REGISTRY, Task
from medboard.tasks.protocols import LOGLIK, LOGLIK_VERSION, PROTOCOLS
from medboard.web.rendering import render

router = APIRouter()
DOCS_ENV = "MEDBOARD_DOCS_URL"
DOCS_IN_SOURCE = "docs/index.md"  # the site's first page, in the source tree (mkdocs)
HUB = "https://huggingface.co/datasets/"
LOGLIK_SUMMARY = (
    "log-likelihood multiple choice: each choice's log-likelihood as a continuation of the "
    "prompt, the most likely one is the answer (lm-evaluation-harness's protocol)"
)


def protocols() -> list[dict[str, Any]]:
    """Every protocol with its version (the run key's `protocol`) and what it does."""
    loglik = {"name": LOGLIK, "version": LOGLIK_VERSION, "kind": "log-likelihood"}
    return [
        {**loglik, "summary": LOGLIK_SUMMARY, "max_new_tokens": None},
        *(
            {
                "name": p.name,
                "version": p.version,
                "kind": "generative",
                "summary": p.summary,
                "max_new_tokens": p.max_new_tokens,
            }
            for p in PROTOCOLS.values()
        ),
    ]


def _source(task: Task) -> dict[str, Any]:
    hub = task.hub
    return {
        "dataset": task.dataset,
        "split": task.split,
        "hub": hub.path if hub else None,
        "hub_config": hub.name if hub else None,
        "url": HUB + hub.path if hub else None,
    }


def _task(task: Task) -> dict[str, Any]:
    return {
        "name": task.name,
        "title": task.label,
        "version": task.version,
        "language": task.language,
        "questions": task.expected_size,
        "license": task.license,
        "noncommercial": task.noncommercial,
        "private": task.private,
        "source": _source(task),
    }


def _sum(values: Iterable[int | None]) -> int | None:
    known = list(values)
    return None if not known or None in known else sum(v or 0 for v in known)


def track_data(track: str) -> dict[str, Any]:
    """One track: its columns (benchmarks, a group's subjects together), their tasks and sizes,
    its languages, the protocol its reference numbers were scored by, and its metric."""
    spec = track_spec(track)
    columns = []
    for column in spec.tasks:
        tasks = [REGISTRY.task(name) for name in spec.column_tasks(column)]
        first = tasks[0]
        columns.append(
            {
                "name": column,
                "title": (first.group_title or first.label) if first.group else first.label,
                "language": first.language,
                "questions": _sum(t.expected_size for t in tasks),
                "license": first.license,
                "noncommercial": any(t.noncommercial for t in tasks),
                "tasks": [_task(t) for t in tasks],
            }
        )
    own = next(p for p in protocols() if p["name"] == spec.protocol)
    return {
        "track": track,
        "title": spec.title,
        "protocol": own,
        "metric": spec.metric,
        "average": "the plain mean of the columns' accuracies",
        "languages": sorted({c["language"] for c in columns}),
        "questions": _sum(c["questions"] for c in columns),
        "columns": columns,
        "links": {"page": f"/leaderboard/{track}", "json": f"/api/leaderboard/{track}"},
    }


def _title(tasks: list[Task]) -> str:
    """A source's name: its group's, its one task's, else the benchmark its attribution names
    ("MMLU (Hendrycks et al.), MIT license": MMLU)."""
    first = tasks[0]
    if first.group_title:
        return first.group_title
    if len(tasks) == 1:
        return first.label
    named = first.attribution.split(" (")[0].split(",")[0].strip()
    return named or first.family or first.name


def sources() -> list[dict[str, Any]]:
    """The data behind the tracks, one row per source: a benchmark family's tasks from one
    dataset (MMLU's subjects together, MedQA's English and Chinese apart), with its license(s),
    attribution and where it comes from."""
    found: dict[tuple[str, str], list[Task]] = {}
    for name in dict.fromkeys(n for track in TRACKS for n in REGISTRY.suite(track)):
        task = REGISTRY.task(name)
        where = task.hub.path if task.hub else task.dataset
        found.setdefault((task.family or task.name, where), []).append(task)
    suites = {track: REGISTRY.suite(track) for track in TRACKS}
    return [
        {
            "family": family,
            "title": _title(tasks),
            "tasks": [t.name for t in tasks],
            "questions": _sum(t.expected_size for t in tasks),
            "licenses": list(dict.fromkeys(t.license or "none stated" for t in tasks)),
            "noncommercial": any(t.noncommercial for t in tasks),
            "attribution": next((t.attribution for t in tasks if t.attribution), ""),
            # one task's Hub config (MMLU's subjects each have their own: none is shown)
            "source": {**_source(tasks[0]), **({"hub_config": None} if len(tasks) > 1 else {})},
            "tracks": [tr for tr in TRACKS if any(t.name in suites[tr] for t in tasks)],
            "private": any(t.private for t in tasks),
        }
        for (family, _), tasks in found.items()
    ]


def docs_url() -> str | None:
    return os.environ.get(DOCS_ENV) or None


def bibtex() -> str:
    """How to cite medboard: its version, and the protocol versions its numbers depend on."""
    versions = ", ".join(p["version"] for p in protocols())
    url = docs_url()
    lines = [
        "@software{medboard,",
        "  title = {medboard: an open, self-hostable medical LLM leaderboard},",
        f"  version = {{{__version__}}},",
        f"  note = {{evaluation protocols {versions}}},",
    ]
    if url:
        lines.append(f"  url = {{{url}}},")
    return "\n".join([*lines, "}"])


def about() -> dict[str, Any]:
    rows = sources()
    return {
        "medboard": {
            "version": __version__,
            "docs_url": docs_url(),
            "docs_in_source": DOCS_IN_SOURCE,
            "docs_setting": DOCS_ENV,
            "api": "/api",
            "api_docs": "/docs",
        },
        "tracks": [track_data(t) for t in TRACKS],
        "protocols": protocols(),
        "sources": rows,
        "cite": {
            "bibtex": bibtex(),
            "benchmarks": [
                {"family": r["family"], "title": r["title"], "attribution": r["attribution"]}
                for r in rows
            ],
        },
    }


@router.get("/api/about", tags=["about"])
def about_json() -> dict[str, Any]:
    """What each track measures and how, the protocol versions, how to cite, the data sources
    with their licenses, and where the documentation is."""
    return about()


@router.get("/about", response_class=HTMLResponse, tags=["pages"])
def about_page(request: Request) -> HTMLResponse:
    """What each track measures and how, protocol versions, citation, data licenses."""
    return render(request, "about.html", {"data": about(), "title": "About"})
