"""The submit form and the queue: HTML pages, JSON twins and the queue's CSV."""

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from medboard.backends import parse_assignments
from medboard.errors import DuplicateSubmissionError, MedboardError
from medboard.leaderboard.ranking import TRACKS
from medboard.queue.submissions import (
    FIELD_LIMITS,
    PROTOCOLS,
    WEIGHT_TYPES,
    SubmitRequest,
    list_submissions,
)
from medboard.results.db import MODEL_TYPES, SUBMISSION_STATES, Submission
from medboard.web.cells import safe_cell
from medboard.web.filters import progress_text
from medboard.web.jobs import whole_job
from medboard.web.rendering import render

router = APIRouter()
DTYPES = ("bfloat16", "float16", "float32")
LIMITS = {
    **FIELD_LIMITS, "track": 50, "dtype": 20, "args": 500, "model_type": 20, "weight_type": 20,
    "protocol": 20,
}  # fmt: skip
QUEUE_COLUMNS = (
    "id", "status", "approved", "model", "name", "track", "dtype", "protocol", "model_type",
    "weight_type", "revision", "adapter", "args", "submitter", "description", "reason",
    "progress", "worker", "attempts", "retries", "retry_at", "entry_id", "created_at",
    "updated_at",
)  # fmt: skip


class SubmitBody(BaseModel):
    model: str = Field(
        max_length=LIMITS["model"],
        description="a model spec: local path, .gguf file, Hub id, or BACKEND:MODEL",
    )
    track: str = Field("open_medical", max_length=LIMITS["track"])
    dtype: str = Field("bfloat16", max_length=LIMITS["dtype"])
    revision: str = Field("", max_length=LIMITS["revision"])
    adapter: str | None = Field(None, max_length=LIMITS["adapter"])
    args: str = Field(
        "", max_length=LIMITS["args"], description="backend arguments: key=value, comma-separated"
    )
    submitter: str = Field("", max_length=LIMITS["submitter"])
    name: str = Field(
        "", max_length=LIMITS["name"], description="how the board names it (default: model)"
    )
    model_type: str = Field(
        "unknown", max_length=LIMITS["model_type"], description=", ".join(MODEL_TYPES)
    )
    weight_type: str = Field(
        "",
        max_length=LIMITS["weight_type"],
        description="original or adapter (default: adapter when an adapter is given)",
    )
    description: str = Field("", max_length=LIMITS["description"])
    protocol: str = Field("loglik", max_length=LIMITS["protocol"], description=", ".join(PROTOCOLS))


def check_fields(fields: dict[str, str | None]) -> str | None:
    """A one-line complaint about a field the queue cannot store, or None."""
    for name, value in fields.items():
        if value is None:
            continue
        if len(value) > LIMITS[name]:
            return f"{name} is too long ({len(value)} characters, at most {LIMITS[name]})"
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            return f"{name} contains control characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{name} is not valid text (a lone surrogate)"
    return None


def _whole_job(job: Submission) -> dict[str, Any] | None:
    if job.status not in ("running", "failed"):
        return None
    whole = whole_job(job.progress, job.track)
    if whole is not None and job.status == "failed":
        whole["eta_seconds"] = None  # stopped: no time left to tell
    return whole


def submission_json(job: Submission) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "approved": job.approved,
        "model": job.model,
        "track": job.track,
        "dtype": job.dtype,
        "revision": job.revision,
        "adapter": job.adapter,
        "args": job.args or {},
        "submitter": job.submitter,
        "name": (job.info or {}).get("name"),
        "protocol": job.protocol,
        "model_type": job.model_type,
        "weight_type": job.weight_type,
        "description": job.description,
        "reason": job.reason,
        "worker": job.worker,
        "attempts": job.attempts,
        # a job waiting to be tried again (its model server or the Hub was down): how many
        # times it has waited, and when a worker may take it next (null when it is not waiting)
        "retries": job.retries or 0,
        "retry_at": (
            job.not_before.isoformat(timespec="seconds")
            if job.status == "pending" and job.not_before
            else None
        ),
        "entry_id": job.entry_id,
        # where a running job is (or where a failed one stopped): tasks_done of tasks, and
        # done of total questions in the current task (task null between tasks)
        "progress": job.progress,
        # the whole job: questions done of all its tasks', and the seconds it has left (null
        # until the worker has a pace to go by)
        "job_progress": _whole_job(job),
        "parameters": (job.info or {}).get("parameters"),
        "created_at": job.created_at.isoformat(timespec="seconds") if job.created_at else None,
        "updated_at": job.updated_at.isoformat(timespec="seconds") if job.updated_at else None,
        "links": {
            "queue": f"/queue#submission-{job.id}",
            "entry": f"/model/{job.entry_id}" if job.entry_id else None,
        },
    }


def _submit(request: Request, fields: dict[str, str | None]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 201 with the submission, or 400/409 with the reason."""
    problem = check_fields(fields)
    if problem is not None:
        return 400, {"detail": problem}
    submit = request.app.state.submit
    try:
        job = submit(
            request.app.state.database,
            SubmitRequest(
                model=(fields["model"] or "").strip(),
                track=fields["track"] or "open_medical",
                dtype=fields["dtype"] or "bfloat16",
                revision=(fields["revision"] or "").strip(),
                adapter=(fields["adapter"] or "").strip() or None,
                submitter=(fields["submitter"] or "").strip(),
                name=(fields.get("name") or "").strip(),
                args=parse_assignments([fields.get("args") or ""]),
                model_type=fields.get("model_type") or "unknown",
                weight_type=fields.get("weight_type") or None,
                description=(fields.get("description") or "").strip(),
                protocol=fields.get("protocol") or "loglik",
                public=True,  # no path outside the models folder, no download here
                origin=request.client.host if request.client else "",  # for the rate limit
            ),
        )
    except DuplicateSubmissionError as exc:
        link = (
            f"/model/{exc.entry_id}"
            if exc.entry_id
            else f"/queue#submission-{exc.submission_id}"
            if exc.submission_id
            else "/queue"
        )
        return 409, {
            "detail": str(exc),
            "submission_id": exc.submission_id or None,
            "entry_id": exc.entry_id,
            "link": link,
        }
    except MedboardError as exc:  # a refused submission, or backend arguments that do not parse
        return 400, {"detail": str(exc)}
    return 201, {"submission": submission_json(job)}


@router.post("/api/submit", status_code=201, tags=["queue"])
def submit_json(request: Request, body: SubmitBody) -> JSONResponse:
    """Validate a model and queue it; 400 says why it cannot be, 409 links the duplicate."""
    status, data = _submit(request, body.model_dump())
    return JSONResponse(data, status_code=status)


def _form_context(fields: dict[str, Any], error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "title": "Submit a model",
        "fields": fields,
        "error": error,
        "track_names": TRACKS,
        "dtypes": DTYPES,
        "model_types": MODEL_TYPES,
        "weight_types": [w for w in WEIGHT_TYPES if w != "delta"],  # delta: refused, see why
        "protocols": PROTOCOLS,
    }


@router.get("/submit", response_class=HTMLResponse, tags=["pages"])
def submit_form(
    request: Request,
    track: Annotated[str, Query(max_length=50)] = "open_medical",
) -> HTMLResponse:
    """The submission form."""
    fields = {
        "model": "", "track": track, "dtype": "bfloat16", "revision": "", "adapter": "", "args": ""
    }  # fmt: skip
    more = {
        "submitter": "", "name": "", "model_type": "unknown", "weight_type": "",
        "description": "", "protocol": "loglik",
    }  # fmt: skip
    return render(request, "submit.html", _form_context({**fields, **more}))


@router.post("/submit", response_class=HTMLResponse, tags=["pages"])
def submit_post(
    request: Request,
    model: Annotated[str, Form()] = "",
    track: Annotated[str, Form()] = "open_medical",
    dtype: Annotated[str, Form()] = "bfloat16",
    revision: Annotated[str, Form()] = "",
    adapter: Annotated[str, Form()] = "",
    args: Annotated[str, Form()] = "",
    submitter: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    model_type: Annotated[str, Form()] = "unknown",
    weight_type: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    protocol: Annotated[str, Form()] = "loglik",
) -> Response:
    """The submission form's post: queues the model or shows why it cannot be."""
    fields: dict[str, str | None] = {
        "model": model,
        "track": track,
        "dtype": dtype,
        "revision": revision,
        "adapter": adapter,
        "args": args,
        "submitter": submitter,
        "name": name,
        "model_type": model_type,
        "weight_type": weight_type,
        "description": description,
        "protocol": protocol,
    }
    status, data = _submit(request, fields)
    if status == 201:
        job = data["submission"]
        return RedirectResponse(
            f"/queue?submitted={job['id']}#submission-{job['id']}", status_code=303
        )
    shown = {k: (v or "")[: LIMITS[k]] for k, v in fields.items()}
    return render(request, "submit.html", _form_context(shown, data), status_code=status)


def _queue(request: Request, status: str | None) -> dict[str, Any]:
    jobs = list_submissions(request.app.state.database)
    counts = {state: sum(1 for j in jobs if j.status == state) for state in SUBMISSION_STATES}
    chosen = status if status in SUBMISSION_STATES else None
    shown = [j for j in jobs if chosen is None or j.status == chosen]
    return {
        "status": chosen,
        "counts": counts,
        "total": len(jobs),
        "submissions": [submission_json(j) for j in shown],
    }


StatusParam = Annotated[
    str | None, Query(description="pending, running, finished or failed", max_length=20)
]


def _known_status(status: str | None) -> str | None:
    """The API's status filter: an unknown one is an error (the page shows every state)."""
    if status is not None and status not in SUBMISSION_STATES:
        raise HTTPException(
            422, f"unknown status '{status}' (choose from {', '.join(SUBMISSION_STATES)})"
        )
    return status


@router.get("/api/queue", tags=["queue"])
def queue_json(request: Request, status: StatusParam = None) -> dict[str, Any]:
    """Submissions, newest first, with their state and the reason of a failure."""
    return _queue(request, _known_status(status))


@router.get("/queue.csv", tags=["queue"])
def queue_csv(request: Request, status: StatusParam = None) -> Response:
    """The queue as CSV."""
    data = _queue(request, _known_status(status))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(QUEUE_COLUMNS)
    for job in data["submissions"]:
        given = ", ".join(f"{k}={v}" for k, v in sorted(job["args"].items()))
        cells = {**job, "progress": progress_text(job["progress"]), "args": given}
        writer.writerow(
            [
                safe_cell(cells[c])
                if isinstance(cells[c], str)
                else ("" if cells[c] is None else cells[c])
                for c in QUEUE_COLUMNS
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="queue.csv"'},
    )


@router.get("/queue", response_class=HTMLResponse, tags=["pages"])
def queue_page(
    request: Request,
    status: StatusParam = None,
    submitted: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    """The queue: pending, running, finished and failed jobs with their progress."""
    data = _queue(request, status)
    return render(
        request,
        "queue.html",
        {"data": data, "submitted": submitted, "title": "Queue", "states": SUBMISSION_STATES},
    )
