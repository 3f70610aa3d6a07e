"""What the `medboard fl` commands share: their consoles, options and one-line input errors."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from medboard.errors import MedboardError

console = Console(stderr=True)
out = Console(soft_wrap=True)

Reference = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        help="The track's reference app (folder or pyproject.toml) whose static section a run "
        "must keep. Default: the repository's flower/.",
    ),
]
AllowMismatch = Annotated[
    bool,
    typer.Option(
        "--allow-data-mismatch",
        help="Evaluate task data whose content hash differs from the expected one.",
    ),
]


@contextmanager
def input_errors() -> Iterator[None]:
    try:
        yield
    except MedboardError as exc:
        # escaped: a message's brackets are text (pip install 'medboard[hf]'), not markup
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def reference_app(path: Path | None) -> Path:
    from medboard.federated.config import default_reference

    return path if path is not None else default_reference()
