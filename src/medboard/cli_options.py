"""Options shared by several commands."""

from typing import Annotated

import typer

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
