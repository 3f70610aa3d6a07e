"""Admin actions: approve or rerun a submission, hide or delete an entry.

The web app asks for the admin token before calling these; each returns what it changed and
raises AdminError (a MedboardError) when the target does not exist or cannot take the action.
"""

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from medboard.errors import MedboardError
from medboard.queue.submissions import ACTIVE
from medboard.results.db import Database, Entry, Submission, utcnow


class AdminError(MedboardError):
    """An admin action that does not apply."""


def approve(database: Database, submission_id: int) -> Submission:
    with database.session() as session:
        job = session.get(Submission, submission_id)
        if job is None:
            raise AdminError(f"no submission #{submission_id}")
        job.approved = True
        job.updated_at = utcnow()
        return job


def rerun(database: Database, submission_id: int) -> Submission:
    """Queue a failed or finished job again (a finished run's cached answers are reused, and
    its entry is not recorded twice: worker._record), or let a job waiting to be tried again
    (claims.retry_later: its model server or the Hub was down) be taken now. A failed job
    whose model was submitted again meanwhile is refused: the unique index on active
    submissions (migration 0006)."""
    try:
        return _rerun(database, submission_id)
    except IntegrityError:
        with database.session() as session:
            job = session.get(Submission, submission_id)
            twin = session.scalars(
                select(Submission.id).where(
                    Submission.dedup_key == (job.dedup_key if job else None),
                    Submission.status.in_(ACTIVE),
                )
            ).first()
        raise AdminError(
            f"submission #{submission_id}: the same model is submitted again as #{twin}; "
            "nothing to rerun"
        ) from None


def _rerun(database: Database, submission_id: int) -> Submission:
    with database.session() as session:
        job = session.get(Submission, submission_id)
        if job is None:
            raise AdminError(f"no submission #{submission_id}")
        waiting = job.status == "pending" and job.not_before is not None
        if job.status not in ("failed", "finished") and not waiting:
            raise AdminError(f"submission #{submission_id} is {job.status}: nothing to rerun")
        again = {"retries": 0} if not waiting else {}  # a new run gets its waits again
        changed = session.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.status == job.status)
            .values(
                status="pending",
                worker=None,
                reason=None,
                not_before=None,
                updated_at=utcnow(),
                **again,
            )
        ).rowcount
        if changed != 1:
            raise AdminError(f"submission #{submission_id} changed meanwhile; try again")
        session.refresh(job)
        return job


def hide(database: Database, entry_id: int, hidden: bool = True) -> Entry:
    with database.session() as session:
        entry = session.get(Entry, entry_id)
        if entry is None:
            raise AdminError(f"no entry {entry_id}")
        entry.hidden = hidden
        return entry


def delete(database: Database, entry_id: int) -> None:
    """Delete an entry and its scores (its runs stay: they are the record of what ran)."""
    with database.session() as session:
        entry = session.get(Entry, entry_id)
        if entry is None:
            raise AdminError(f"no entry {entry_id}")
        session.execute(
            update(Submission).where(Submission.entry_id == entry_id).values(entry_id=None)
        )
        session.delete(entry)
