"""Jinja2 filters: how numbers read on the pages (scores are fractions, shown in percent)."""

from collections.abc import Mapping, Sequence
from typing import Any

from medboard.leaderboard.ranking import percent_text


def pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else percent_text(value, digits)


def interval_text(bounds: Sequence[float] | None) -> str:
    if not bounds:
        return ""
    return f"{100 * bounds[0]:.1f}–{100 * bounds[1]:.1f}"


def human_params(value: int | None) -> str:
    if value is None:
        return "—"
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= size:
            return f"{value / size:.1f}{suffix}"
    return str(value)


def dash(value: Any) -> Any:
    return "—" if value is None or value == "" else value


def gigabytes(value: float | None) -> str:
    """A communication cost in GB as the published table gives it (one decimal), and a cost
    under 0.1 GB (a small model's run) to two significant digits rather than as 0.0."""
    if value is None:
        return "—"
    return f"{value:.1f}" if value >= 0.1 or value == 0 else f"{value:.2g}"


def prob(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def progress_text(progress: Mapping[str, Any] | None) -> str:
    """Where a job is, from what its worker stored (queue.worker): "task 2 of 9: medmcqa
    1,200/4,183", or "3 of 9 tasks done" between tasks; "" when nothing readable is stored."""
    if not isinstance(progress, Mapping):
        return ""
    tasks_done, tasks = _count(progress.get("tasks_done")), _count(progress.get("tasks"))
    done, total = _count(progress.get("done")), _count(progress.get("total"))
    task = progress.get("task")
    if tasks_done is None or tasks is None:
        return ""
    if isinstance(task, str) and task and done is not None and total is not None:
        return f"task {tasks_done + 1} of {tasks}: {task} {done:,}/{total:,}"
    return f"{tasks_done} of {tasks} tasks done"


def eta_text(progress: Mapping[str, Any] | None) -> str:
    """What a running job's worker estimates its current task has left: "about 6 min left in
    this task"; "" when it has no estimate yet (the task's first two batches) or none readable.
    """
    seconds = _count(progress.get("eta_seconds")) if isinstance(progress, Mapping) else None
    if seconds is None or seconds < 0:
        return ""
    if seconds < 60:
        left = "under a minute"
    elif seconds < 3600:
        left = f"about {round(seconds / 60)} min"
    else:
        hours, minutes = divmod(round(seconds / 60), 60)
        left = f"about {hours} h {minutes} min"
    return f"{left} left in this task"
