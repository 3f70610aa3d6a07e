"""Labels and cells: the names the pages give tasks and columns, and text safe in a CSV cell.

Shared by the leaderboard (board.py), the model page (model_data.py) and the queue, apart from
any of them so that none imports another for them.
"""

from typing import Any

from medboard.tasks import REGISTRY, UnknownTaskError

COLUMN_LABELS = {
    "rank": "Rank",
    "model": "Model",
    "average": "Average",
    "team": "Team",
    "model_type": "Type",
    "weight_type": "Weight type",
    "parameters": "Params",
    "dtype": "Precision",
    "date": "Date",
    "origin": "Source",
    "source": "Source",
    "comm_cost_gb": "Comm. cost (GB)",
}


def task_terms(task: str) -> dict[str, Any]:
    """A task's language and its data's license as pages show them (None for a task not
    registered here)."""
    try:
        found = REGISTRY.task(task)
    except UnknownTaskError:
        return {"language": None, "license": None, "noncommercial": False}
    return {
        "language": found.language,
        "license": found.license,
        "noncommercial": found.noncommercial,
    }


def label(column: str) -> str:
    """A column's header: a task's or benchmark's title, "Average (zh)", or the column's label."""
    if column.startswith("avg_"):
        return f"Average ({column.removeprefix('avg_')})"
    return REGISTRY.label(column) or COLUMN_LABELS.get(column) or column


def safe_cell(text: str) -> str:
    """Text a spreadsheet will not run as a formula (CSV injection)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
