"""Options shared by several commands."""

from typing import Annotated

import typer
from rich.console import Console

AllowMismatch = Annotated[
    bool,
    typer.Option(
        "--allow-data-mismatch",
        help="Evaluate data whose content hash differs from the task's.",
    ),
]

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $MEDBOARD_DB, else <home>/medboard.db)."),
]

LeaseOption = Annotated[
    float, typer.Option(help="Seconds without a heartbeat before a job is reclaimed.")
]


def message_console() -> Console:
    """The console commands print to (stdout). soft_wrap: a message line (a path, a URL) is never
    broken where the terminal, or a log's 80 columns, ends; tables are printed with
    soft_wrap=False and still fit the width."""
    return Console(soft_wrap=True)
