"""Submissions: validated, queued, claimed by one worker at a time, finished or failed.

States: pending -> running -> finished | failed. A worker claims a job atomically (PostgreSQL:
`SELECT ... FOR UPDATE SKIP LOCKED`; SQLite: one conditional UPDATE), keeps it alive with
heartbeats, and a job whose heartbeat is older than the lease goes back to any worker that asks,
which resumes the evaluation from its answer cache.
"""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, func, or_, select, update
from sqlalchemy.orm import Session

from medboard.backends import ModelInfo, ModelSpec, registry
from medboard.errors import DuplicateSubmissionError, MedboardError, SubmissionError
from medboard.results.db import Database, Entry, Model, Submission, utcnow
from medboard.tasks import TRACKS

DEFAULT_LEASE_SECONDS = 120.0
DEFAULT_DTYPE = "bfloat16"  # what the Open Medical-LLM board evaluates in
# Spec arguments with a column of their own in the submissions table.
COLUMNS = ("dtype", "revision", "adapter")
ACTIVE = ("pending", "running", "finished")


@dataclass(frozen=True)
class SubmitRequest:
    model: str  # a model spec's text: local path, .gguf file, Hub id, or BACKEND:MODEL
    track: str = "open_medical"
    # The precision, where the backend has one (a served model's is the server's).
    dtype: str | None = DEFAULT_DTYPE
    revision: str = ""
    adapter: str | None = None
    submitter: str = ""
    name: str = ""  # how the board names the model (default: `model` as given)
    args: Mapping[str, Any] = field(default_factory=dict)  # the backend's (-M key=value)


def approval_required() -> bool:
    """Whether new submissions wait for an admin's approval (MEDBOARD_REQUIRE_APPROVAL=1)."""
    return os.environ.get("MEDBOARD_REQUIRE_APPROVAL", "") not in ("", "0", "false", "no")


def rate_limit() -> int:
    """Submissions allowed per submitter per hour (MEDBOARD_SUBMIT_LIMIT, default 10)."""
    return int(os.environ.get("MEDBOARD_SUBMIT_LIMIT", "10"))


# What the database's columns hold: the model spec becomes the models table's name (300
# characters; a longer one would pass validation and fail only when its entry is recorded, on
# PostgreSQL, after the whole evaluation).
FIELD_LIMITS = {"model": 300, "revision": 100, "adapter": 500, "submitter": 200, "name": 300}


def check_field(field: str, value: str) -> None:
    """A submission field (one of FIELD_LIMITS) within its length and without control
    characters."""
    limit = FIELD_LIMITS[field]
    if len(value) > limit:
        raise SubmissionError(f"{field} is too long ({len(value)} characters, at most {limit})")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise SubmissionError(f"{field} contains control characters")


def request_spec(request: SubmitRequest) -> ModelSpec:
    """The model spec a request names, its arguments checked by its backend. The dtype applies
    where the backend takes one (a form or command always sends one); a revision or adapter
    given to a backend without them is refused."""
    if not request.model.strip():
        raise SubmissionError("no model given")
    for name in FIELD_LIMITS:
        check_field(name, getattr(request, name) or "")
    if request.track not in TRACKS:
        raise SubmissionError(f"unknown track '{request.track}' (choose from {', '.join(TRACKS)})")
    given = {"revision": request.revision, "adapter": request.adapter}
    args = {**request.args, **{k: v for k, v in given.items() if v}}
    try:
        return registry.resolve(request.model, args, defaults={"dtype": request.dtype})
    except MedboardError as exc:
        raise SubmissionError(str(exc)) from None


def spec_of(job: Submission) -> ModelSpec:
    """The spec a submission was queued with, from its columns: the exact revision it was
    validated at (a content hash or a commit) in place of the one asked for."""
    columns = {"dtype": job.dtype, "revision": job.revision, "adapter": job.adapter}
    return registry.resolve(job.model, job.args or {}, defaults=columns)


def _duplicate(
    database: Database, spec: ModelSpec, dtype: str, track: str, info: ModelInfo
) -> None:
    with database.session() as session:
        queued = session.scalars(
            select(Submission).where(
                Submission.revision == info.revision,
                Submission.dtype == dtype,
                Submission.track == track,
                Submission.status.in_(ACTIVE),
            )
        ).all()
        for existing in queued:
            if existing.info.get("adapter_hash", "") == info.adapter_hash:
                where = (
                    f"/model/{existing.entry_id}"
                    if existing.entry_id
                    else f"/queue#submission-{existing.id}"
                )
                raise DuplicateSubmissionError(
                    f"{spec.text} ({dtype}) is submitted already as #{existing.id} "
                    f"({existing.status}): see {where}",
                    existing.id,
                    existing.entry_id,
                )
        entry = session.scalars(
            select(Entry)
            .join(Model)
            .where(
                Model.revision == info.revision,
                Model.dtype == dtype,
                Model.adapter_hash == info.adapter_hash,
                Entry.track == track,
                Entry.origin == "evaluated",
            )
        ).first()
        if entry is not None:
            raise DuplicateSubmissionError(
                f"{spec.text} ({dtype}) is on the leaderboard already: see /model/{entry.id}",
                0,
                entry.id,
            )


def submit(
    database: Database,
    request: SubmitRequest,
    validate: Callable[[ModelSpec], ModelInfo] = registry.validate,
) -> Submission:
    """Validate the model and queue it (pending); SubmissionError says why it cannot be."""
    spec = request_spec(request)
    since = utcnow() - timedelta(hours=1)
    with database.session() as session:
        recent = session.scalar(
            select(func.count())
            .select_from(Submission)
            .where(Submission.submitter == request.submitter, Submission.created_at >= since)
        )
    if request.submitter and recent >= rate_limit():
        raise SubmissionError(
            f"rate limit: {recent} submissions from {request.submitter} in the last hour "
            f"(at most {rate_limit()}); try again later"
        )
    try:
        info = validate(spec)
    except MedboardError as exc:
        raise SubmissionError(f"{request.model} cannot be submitted: {exc}") from None
    if "loglikelihood" not in info.capabilities:  # every track is scored by log-likelihood
        raise SubmissionError(
            f"{request.model} cannot be submitted: the {request.track} track scores choices "
            "by log-likelihood, which this model does not give"
        )
    # A served model's precision is the server's: the entry says "served".
    dtype = str(spec.get("dtype") or info.extra.get("dtype") or "none")
    _duplicate(database, spec, dtype, request.track, info)
    name = request.name.strip()
    submission = Submission(
        model=spec.text,
        revision=info.revision,
        dtype=dtype,
        adapter=spec.get("adapter"),
        track=request.track,
        submitter=request.submitter,
        status="pending",
        approved=not approval_required(),
        info=info.to_json() | ({"name": name} if name else {}),
        args={k: v for k, v in spec.args if k not in COLUMNS} or None,
    )
    with database.session() as session:
        session.add(submission)
    return submission


def list_submissions(database: Database) -> list[Submission]:
    """Every submission, newest first."""
    with database.session() as session:
        return list(session.scalars(select(Submission).order_by(Submission.id.desc())).all())


def get_submission(database: Database, submission_id: int) -> Submission | None:
    with database.session() as session:
        return session.get(Submission, submission_id)


def _claimable(now: datetime, lease_seconds: float) -> object:
    expired = now - timedelta(seconds=lease_seconds)
    return Submission.approved.is_(True) & or_(
        Submission.status == "pending",
        (Submission.status == "running") & (Submission.heartbeat_at < expired),
    )


def claim(
    database: Database, worker: str, lease_seconds: float = DEFAULT_LEASE_SECONDS
) -> Submission | None:
    """Take the oldest pending job (or one whose worker stopped beating), or None."""
    now = utcnow()
    with database.session() as session:
        if database.engine.dialect.name == "postgresql":
            job = session.scalars(
                select(Submission)
                .where(_claimable(now, lease_seconds))
                .order_by(Submission.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if job is None:
                return None
            job_id = job.id
        else:
            job_id = session.scalar(
                select(Submission.id)
                .where(_claimable(now, lease_seconds))
                .order_by(Submission.id)
                .limit(1)
            )
            if job_id is None:
                return None
        # The condition is repeated in the UPDATE: of two SQLite workers that picked the same
        # job, only one changes a row.
        changed = session.execute(
            update(Submission)
            .where(Submission.id == job_id, _claimable(now, lease_seconds))
            .values(
                status="running",
                worker=worker,
                heartbeat_at=now,
                attempts=Submission.attempts + 1,
                reason=None,
                progress=None,
                updated_at=now,
            )
        ).rowcount
    if changed != 1:
        return None
    return get_submission(database, job_id)


def _claimed_update(submission_id: int, claimed_by: str, **values: object) -> Update:
    """The UPDATE that changes a running job only if it is still `claimed_by`'s."""
    return (
        update(Submission)
        .where(
            Submission.id == submission_id,
            Submission.worker == claimed_by,
            Submission.status == "running",
        )
        .values(updated_at=utcnow(), **values)
    )


def _update_claimed(
    database: Database, submission_id: int, claimed_by: str, **values: object
) -> bool:
    """Change a running job only if it is still `claimed_by`'s."""
    with database.session() as session:
        changed = session.execute(_claimed_update(submission_id, claimed_by, **values)).rowcount
    return changed == 1


def heartbeat(
    database: Database, submission_id: int, worker: str, progress: dict[str, Any] | None = None
) -> bool:
    """Keep a claim alive, and store where the job is when `progress` is given; False when the
    job is no longer this worker's."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = progress
    return _update_claimed(database, submission_id, worker, **values)


def finish_in(session: Session, submission_id: int, worker: str, entry_id: int | None) -> bool:
    """Mark a job finished inside the caller's transaction (the worker's, which records the
    job's entry: both happen or neither); False when the job is no longer this worker's."""
    statement = _claimed_update(
        submission_id, worker, status="finished", entry_id=entry_id, progress=None
    )
    return session.execute(statement).rowcount == 1


def release(database: Database, submission_id: int, worker: str) -> bool:
    """Give a job back to the queue (pending, no worker) when its worker is stopped mid-job:
    the next worker, or this one restarted, takes it at once and resumes from the answer cache,
    instead of after the lease. False when the job is no longer this worker's."""
    return _update_claimed(
        database, submission_id, worker, status="pending", worker=None, heartbeat_at=None
    )


def fail(database: Database, submission_id: int, worker: str, reason: str) -> bool:
    return _update_claimed(database, submission_id, worker, status="failed", reason=reason)
