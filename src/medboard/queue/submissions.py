"""Submissions: validated, queued, claimed by one worker at a time, finished or failed.

States: pending -> running -> finished | failed. A worker claims a job atomically (PostgreSQL:
`SELECT ... FOR UPDATE SKIP LOCKED`; SQLite: one conditional UPDATE), keeps it alive with
heartbeats, and a job whose heartbeat is older than the lease goes back to any worker that asks,
which resumes the evaluation from its answer cache.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, func, or_, select, update
from sqlalchemy.orm import Session

from medboard.backends.hf_loading import DTYPES
from medboard.errors import DuplicateSubmissionError, MedboardError, SubmissionError
from medboard.queue.validate import ModelInfo, validate_model
from medboard.results.db import Database, Entry, Model, Submission, utcnow
from medboard.tasks import TRACKS

DEFAULT_LEASE_SECONDS = 120.0
ACTIVE = ("pending", "running", "finished")


@dataclass(frozen=True)
class SubmitRequest:
    model: str  # local path, .gguf file or Hub id
    track: str = "open_medical"
    dtype: str = "bfloat16"
    revision: str = ""
    adapter: str | None = None
    submitter: str = ""
    name: str = ""  # how the board names the model (default: `model` as given)


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


def _check_request(request: SubmitRequest) -> None:
    if not request.model.strip():
        raise SubmissionError("no model given")
    for field in FIELD_LIMITS:
        check_field(field, getattr(request, field) or "")
    if request.track not in TRACKS:
        raise SubmissionError(f"unknown track '{request.track}' (choose from {', '.join(TRACKS)})")
    if request.dtype not in DTYPES:
        raise SubmissionError(f"unknown dtype '{request.dtype}' (choose from {', '.join(DTYPES)})")


def _duplicate(database: Database, request: SubmitRequest, info: ModelInfo) -> None:
    with database.session() as session:
        queued = session.scalars(
            select(Submission).where(
                Submission.revision == info.revision,
                Submission.dtype == request.dtype,
                Submission.track == request.track,
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
                    f"{request.model} ({request.dtype}) is submitted already as #{existing.id} "
                    f"({existing.status}): see {where}",
                    existing.id,
                    existing.entry_id,
                )
        entry = session.scalars(
            select(Entry)
            .join(Model)
            .where(
                Model.revision == info.revision,
                Model.dtype == request.dtype,
                Model.adapter_hash == info.adapter_hash,
                Entry.track == request.track,
                Entry.origin == "evaluated",
            )
        ).first()
        if entry is not None:
            raise DuplicateSubmissionError(
                f"{request.model} ({request.dtype}) is on the leaderboard already: "
                f"see /model/{entry.id}",
                0,
                entry.id,
            )


def submit(
    database: Database,
    request: SubmitRequest,
    validate: Callable[[str, str, str | None], ModelInfo] = validate_model,
) -> Submission:
    """Validate the model and queue it (pending); SubmissionError says why it cannot be."""
    _check_request(request)
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
        info = validate(request.model, request.revision, request.adapter)
    except MedboardError as exc:
        raise SubmissionError(f"{request.model} cannot be submitted: {exc}") from None
    _duplicate(database, request, info)
    name = request.name.strip()
    submission = Submission(
        model=request.model,
        revision=info.revision,
        dtype=request.dtype,
        adapter=request.adapter,
        track=request.track,
        submitter=request.submitter,
        status="pending",
        approved=not approval_required(),
        info=info.to_json() | ({"name": name} if name else {}),
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
