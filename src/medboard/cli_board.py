"""The leaderboard's commands: import-published, submit, worker (registered on the main app)."""

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from medboard.cli_options import AllowMismatch, DbOption

out = Console()


def import_published_command(
    file: Annotated[Path, typer.Argument(help="A published table: .csv or .json.")],
    track: Annotated[
        str | None,
        typer.Option(
            help="Track for rows without a track column (open_medical, flowertune_medical)."
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Bring a published leaderboard into the database, marked as published (not evaluated)."""
    from medboard.leaderboard.published import import_published
    from medboard.results.db import open_database

    report = import_published(open_database(db), file, track)
    if report.already_imported:
        out.print(f"{file} ({report.format}) was imported already: nothing changed")
    else:
        out.print(f"imported {report.added} published entries from {file} ({report.format})")


def submit_command(
    model: Annotated[str, typer.Argument(help="Model directory, .gguf file or Hub id.")],
    track: Annotated[
        str, typer.Option(help="open_medical or flowertune_medical.")
    ] = "open_medical",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "bfloat16",
    revision: Annotated[str, typer.Option(help="Hub revision (branch, tag or commit).")] = "",
    adapter: Annotated[str | None, typer.Option(help="A PEFT adapter directory.")] = None,
    submitter: Annotated[str, typer.Option(help="Who submits (for the rate limit).")] = "",
    db: DbOption = None,
) -> None:
    """Validate a model and queue it for evaluation; a worker picks it up."""
    from medboard.queue.submissions import SubmitRequest, submit
    from medboard.results.db import open_database

    request = SubmitRequest(model, track, dtype, revision, adapter, submitter)
    job = submit(open_database(db), request)
    params = job.info.get("parameters")
    size = f", {params / 1e6:.1f}M parameters" if params else ""
    out.print(f"queued #{job.id}: {model} ({dtype}) on {track}{size}")


def worker_command(
    once: Annotated[
        bool, typer.Option("--once", help="Stop when the queue is empty instead of waiting.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Worker name (default host:thread).")] = None,
    poll: Annotated[float, typer.Option(help="Seconds between polls of an empty queue.")] = 2.0,
    lease: Annotated[
        float, typer.Option(help="Seconds without a heartbeat before a job is reclaimed.")
    ] = 120.0,
    allow_data_mismatch: AllowMismatch = False,
    db: DbOption = None,
) -> None:
    """Claim queued submissions one at a time, evaluate them and record their entries."""
    from medboard.queue.worker import run_worker
    from medboard.results.db import open_database
    from medboard.runner import EvalOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    options = EvalOptions(allow_data_mismatch=allow_data_mismatch)
    handled = run_worker(
        open_database(db), name, once=once, poll_seconds=poll, lease_seconds=lease, options=options
    )
    out.print(f"worker stopped after {handled} job(s)")


def register(app: typer.Typer) -> None:
    app.command("import-published")(import_published_command)
    app.command("submit")(submit_command)
    app.command("worker")(worker_command)
