"""A worker's hold on a queued job: claimed by one worker at a time, kept with heartbeats,
then finished, failed, given back, or put back to wait when what failed may pass.

States: pending -> running -> finished | failed. A worker claims a job atomically (PostgreSQL:
`SELECT ... FOR UPDATE SKIP LOCKED`; SQLite: one conditional UPDATE), keeps it alive with
heartbeats, and a job whose heartbeat is older than the lease goes back to any worker that asks,
which resumes the evaluation from its answer cache.
"""

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, or_, select, update
from sqlalchemy.orm import Session

from medboard.results.db import Database, Submission, utcnow

DEFAULT_LEASE_SECONDS = 120.0


def get_submission(database: Database, submission_id: int) -> Submission | None:
    with database.session() as session:
        return session.get(Submission, submission_id)


def _claimable(now: datetime, lease_seconds: float, only: Collection[int] | None) -> Any:
    expired = now - timedelta(seconds=lease_seconds)
    waited = Submission.not_before.is_(None) | (Submission.not_before <= now)
    claimable = Submission.approved.is_(True) & or_(
        (Submission.status == "pending") & waited,
        (Submission.status == "running") & (Submission.heartbeat_at < expired),
    )
    return claimable if only is None else claimable & Submission.id.in_(list(only))


def claim(
    database: Database,
    worker: str,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    only: Collection[int] | None = None,
) -> Submission | None:
    """Take the oldest pending job (or one whose worker stopped beating), or None; `only`: among
    these jobs (medboard fl submit --now scores its own jobs, not the rest of the queue)."""
    now = utcnow()
    with database.session() as session:
        if database.engine.dialect.name == "postgresql":
            job = session.scalars(
                select(Submission)
                .where(_claimable(now, lease_seconds, only))
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
                .where(_claimable(now, lease_seconds, only))
                .order_by(Submission.id)
                .limit(1)
            )
            if job_id is None:
                return None
        # The condition is repeated in the UPDATE: of two SQLite workers that picked the same
        # job, only one changes a row.
        changed = session.execute(
            update(Submission)
            .where(Submission.id == job_id, _claimable(now, lease_seconds, only))
            .values(
                status="running",
                worker=worker,
                heartbeat_at=now,
                attempts=Submission.attempts + 1,
                reason=None,
                not_before=None,
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


def update_claimed(
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
    return update_claimed(database, submission_id, worker, **values)


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
    return update_claimed(
        database, submission_id, worker, status="pending", worker=None, heartbeat_at=None
    )


def retry_later(
    database: Database, submission_id: int, worker: str, reason: str, seconds: float
) -> bool:
    """Put a job back to wait after a failure that may pass (its model server or the Hub
    down): pending, claimable by any worker `seconds` from now, the reason kept for the queue
    page to show, and one more in its `retries`; the answers it has are in the cache, so the
    next try resumes. False when the job is no longer this worker's."""
    return update_claimed(
        database, submission_id, worker, status="pending", worker=None, heartbeat_at=None,
        not_before=utcnow() + timedelta(seconds=seconds), retries=Submission.retries + 1,
        reason=reason,
    )  # fmt: skip


def fail(database: Database, submission_id: int, worker: str, reason: str) -> bool:
    return update_claimed(database, submission_id, worker, status="failed", reason=reason)
