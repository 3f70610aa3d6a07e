"""A queued job as the pages read it: the whole job's progress and time left, and when things
happened in words a person reads at a glance ("3 min ago"), the exact time kept in the markup.

The worker stores where a job is with each heartbeat (queue.worker._JobReporter.progress): the
current task's questions, and the whole job's (`job_done` of `job_total`, `job_eta_seconds`).
Rows stored by an older worker lack the job's numbers: they are counted here from the tasks'
expected sizes, and have no time left (never a made-up one).
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from medboard.tasks import REGISTRY
from medboard.tasks.base import UnknownTaskError

ESTIMATING = "estimating…"


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _expected_sizes(track: str) -> list[int | None]:
    try:
        return [t.expected_size for t in REGISTRY.resolve(track, None)]
    except UnknownTaskError:
        return []


def whole_job(progress: Mapping[str, Any] | None, track: str) -> dict[str, Any] | None:
    """The whole job: questions `done` of `total` over all its tasks, the `fraction` done and
    the seconds it has left (`eta_seconds`, None until the worker has a pace to go by); None
    when nothing readable is stored."""
    if not isinstance(progress, Mapping):
        return None
    done, total = _count(progress.get("job_done")), _count(progress.get("job_total"))
    if done is None:  # stored by a worker that kept the current task only
        tasks_done = _count(progress.get("tasks_done"))
        if tasks_done is None:
            return None
        sizes = _expected_sizes(track)
        if not sizes or None in sizes:
            return None
        in_task = (_count(progress.get("done")) or 0) if progress.get("task") else 0
        done = sum(s or 0 for s in sizes[:tasks_done]) + in_task
        total = sum(s or 0 for s in sizes)
    eta = _count(progress.get("job_eta_seconds"))
    return {
        "done": done,
        "total": total,
        "fraction": round(done / total, 4) if total else None,
        "eta_seconds": eta if eta is not None and eta >= 0 else None,
    }


def duration_text(seconds: int) -> str:
    if seconds < 60:
        return "under a minute"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"about {hours} h {minutes} min"


def job_left_text(job: Mapping[str, Any] | None) -> str:
    """ "about 40 min left", or "estimating…" while the worker has no pace yet."""
    seconds = job.get("eta_seconds") if job else None
    return ESTIMATING if seconds is None else f"{duration_text(seconds)} left"


def _parse(value: datetime | str | None) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # stored in UTC, naive


def ago_text(value: datetime | str | None, now: datetime | None = None) -> str:
    """How long ago, in words: "just now", "42 s ago", "3 min ago", "2 h 5 min ago"; past a
    day, the UTC date and time ("2025-03-12 14:05 UTC")."""
    when = _parse(value)
    if when is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        hours, minutes = divmod(int(seconds // 60), 60)
        return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
    return when.strftime("%Y-%m-%d %H:%M UTC")


def time_tag(value: datetime | str | None) -> Markup:
    """A `<time>` element: the words of ago_text, the exact UTC time in its attributes (a
    hover shows it); "—" when there is no time."""
    when = _parse(value)
    if when is None:
        return Markup("—")
    exact = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(
        exact, escape(ago_text(when))
    )
