"""The leaderboard's commands: import-published, submit, worker (registered on the main app)."""

import itertools
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from medboard.cli_options import (
    AllowMismatch,
    DbOption,
    DeviceOption,
    LeaseOption,
    ModelArgs,
    backend_args,
    message_console,
    utf8_located,
)

out = message_console()
# How long `serve` waits at shutdown for a busy worker to finish its batch and put its job back
# in the queue (longer, and the job waits for its lease to run out instead).
SHUTDOWN_WAIT = 60.0


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

    with utf8_located(file):
        report = import_published(open_database(db), file, track)
    if report.already_imported:
        out.print(f"{file} ({report.format}) was imported already: nothing changed")
    else:
        out.print(f"imported {report.added} published entries from {file} ({report.format})")


def submit_command(
    model: Annotated[
        str,
        typer.Argument(
            help="Model directory, .gguf file, Hub id, or BACKEND:MODEL (`medboard backends`)."
        ),
    ],
    track: Annotated[
        str,
        typer.Option(help="The track to rank it on: open_medical, or another (`medboard tasks`)."),
    ] = "open_medical",
    dtype: Annotated[
        str, typer.Option(help="float32, bfloat16 or float16 (where the backend has a dtype).")
    ] = "bfloat16",
    revision: Annotated[str, typer.Option(help="Hub revision (branch, tag or commit).")] = "",
    adapter: Annotated[str | None, typer.Option(help="A PEFT adapter directory.")] = None,
    model_arg: ModelArgs = None,
    submitter: Annotated[str, typer.Option(help="Who submits (for the rate limit).")] = "",
    name: Annotated[
        str, typer.Option(help="How the leaderboard names the model (default: MODEL as given).")
    ] = "",
    model_type: Annotated[
        str, typer.Option(help="pretrained, fine-tuned, instruct, federated or unknown.")
    ] = "unknown",
    weight_type: Annotated[
        str | None,
        typer.Option(help="original or adapter (default: adapter with --adapter, else original)."),
    ] = None,
    description: Annotated[str, typer.Option(help="One line on the model (optional).")] = "",
    protocol: Annotated[
        str, typer.Option(help="loglik (log-likelihood, the default) or generative.")
    ] = "loglik",
    db: DbOption = None,
) -> None:
    """Validate a model and queue it for evaluation; a worker picks it up."""
    from medboard.queue.submissions import SubmitRequest, submit
    from medboard.results.db import open_database

    args = backend_args(model_arg)
    request = SubmitRequest(
        model, track, dtype, revision, adapter, submitter, name, args,
        model_type=model_type, weight_type=weight_type, description=description,
        protocol=protocol,
    )  # fmt: skip
    job = submit(open_database(db), request)
    params = job.info.get("parameters")
    size = f", {params / 1e6:.1f}M parameters" if params else ""
    out.print(f"queued #{job.id}: {job.model} ({job.dtype}) on {track}{size}")


def worker_command(
    once: Annotated[
        bool, typer.Option("--once", help="Stop when the queue is empty instead of waiting.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Worker name (default host:thread).")] = None,
    poll: Annotated[float, typer.Option(help="Seconds between polls of an empty queue.")] = 2.0,
    device: DeviceOption = None,
    model_arg: ModelArgs = None,
    lease: LeaseOption = 120.0,
    allow_data_mismatch: AllowMismatch = False,
    db: DbOption = None,
) -> None:
    """Claim queued submissions one at a time, evaluate them and record their entries; --device
    and -M (how to run: batch size, kernels) apply to every job whose backend takes them."""
    from medboard.queue.worker import check_settings, run_worker
    from medboard.results.db import open_database
    from medboard.runner import EvalOptions

    check_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    options = EvalOptions(allow_data_mismatch=allow_data_mismatch)
    args = _worker_args(model_arg, device)
    # SIGTERM (docker stop, systemctl stop, kill) as Ctrl-C: the job goes back to the queue
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    handled = run_worker(
        open_database(db), name, once=once, poll_seconds=poll, lease_seconds=lease,
        options=options, backend_args=args,
    )  # fmt: skip
    out.print(f"worker stopped after {handled} job(s)")


def _worker_args(items: list[str] | None, device: str | None) -> dict[str, str]:
    """A worker's -M and --device, checked before it claims a job (registry.per_run_args: a
    cuda device that is not there is one line, and no job is taken)."""
    from medboard.backends import registry

    return registry.per_run_args(backend_args(items, device=device))


def import_results_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="An lm-eval --output_path folder (each model in it: its newest run) or one "
            "results_*.json."
        ),
    ],
    track: Annotated[
        str | None,
        typer.Option(help="Track of the entry (default: the track its tasks cover best)."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Bring lm-evaluation-harness runs into the leaderboard, marked as imported: one entry per
    model in the folder (its newest run)."""
    from medboard.leaderboard.exchange import import_all
    from medboard.results.db import open_database

    with utf8_located(path):
        reports = import_all(open_database(db), path, track)
    for report in reports:
        skipped = f"; skipped tasks medboard does not know: {', '.join(report.skipped)}"
        note = skipped if report.skipped else ""
        if report.entry_id is None:
            out.print(f"{report.results_file} was imported already: nothing changed{note}")
        else:
            out.print(
                f"imported entry {report.entry_id} on {report.track}: "
                f"{', '.join(report.tasks)}{note}"
            )


def export_command(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")],
    fmt: Annotated[str, typer.Option("--format", help="Output format: lm-eval.")] = "lm-eval",
    entry: Annotated[
        list[int] | None, typer.Option("--entry", help="Entry id (repeatable; default all).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Write evaluated (and imported) entries in lm-evaluation-harness's output format."""
    from medboard.errors import MedboardError
    from medboard.leaderboard.exchange import export_entries
    from medboard.results.db import open_database

    if fmt != "lm-eval":
        raise MedboardError(f"unknown export format '{fmt}' (supported: lm-eval)")
    written = export_entries(open_database(db), out_dir, entry)
    for path in written:
        out.print(f"wrote {path}")
    out.print(f"{len(written)} entr{'y' if len(written) == 1 else 'ies'} exported to {out_dir}")


def _default_published() -> list[Path]:
    from medboard.paths import shared_benchmarks

    benchmarks = shared_benchmarks()
    table = benchmarks.parent / "published" / "flowertune_medical.csv" if benchmarks else None
    return [table] if table is not None and table.is_file() else []


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="In-process worker threads (0: leave the queue to `worker`).")
    ] = 1,
    published: Annotated[
        list[Path] | None,
        typer.Option(
            help="Published table to load at start (repeatable; default: the FlowerTune medical "
            "table of ../shared/published when present)."
        ),
    ] = None,
    submit: Annotated[
        list[str] | None,
        typer.Option(
            "--submit", help="Model to queue at start (repeatable), as `medboard submit`."
        ),
    ] = None,
    name: Annotated[
        list[str] | None,
        typer.Option(
            "--name",
            help="Leaderboard name of the model queued by the --submit in the same place "
            "(repeatable; default: the model as given).",
        ),
    ] = None,
    dtype: Annotated[
        str, typer.Option(help="dtype of the models queued by --submit.")
    ] = "bfloat16",
    device: DeviceOption = None,
    model_arg: ModelArgs = None,
    admin_token: Annotated[
        str | None,
        typer.Option(help="Token for admin actions (default: $MEDBOARD_ADMIN_TOKEN; none: off)."),
    ] = None,
    lease: LeaseOption = 120.0,
    allow_data_mismatch: AllowMismatch = False,
    db: DbOption = None,
) -> None:
    """The leaderboard: web app and in-process workers on one database (SQLite by default);
    --device and -M are the workers' (as `medboard worker`)."""
    import os

    _check_submitted(submit or [], dtype)  # a missing model file: one line, before the imports
    import uvicorn

    from medboard.errors import DuplicateSubmissionError, MedboardError
    from medboard.leaderboard.published import import_published
    from medboard.queue.submissions import SubmitRequest
    from medboard.queue.submissions import submit as queue_submit
    from medboard.queue.worker import check_settings, run_worker
    from medboard.results.db import open_database
    from medboard.runner import EvalOptions
    from medboard.web.app import create_app

    check_settings()
    models, names = submit or [], name or []
    if len(names) > len(models):
        raise MedboardError(
            f"{len(names)} --name for {len(models)} --submit: each --name names the model of "
            "the --submit in the same place"
        )
    args = _worker_args(model_arg, device)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    database = open_database(db)
    for table in published if published is not None else _default_published():
        report = import_published(database, table)
        if not report.already_imported:
            out.print(f"loaded {report.added} published entries from {table}")
    for model, shown in itertools.zip_longest(models, names, fillvalue=""):
        try:
            job = queue_submit(database, SubmitRequest(model=model, dtype=dtype, name=shown))
            called = f" as {shown}" if shown else ""
            out.print(f"queued #{job.id}: {job.model} ({job.dtype}){called}")
        except DuplicateSubmissionError as exc:
            out.print(f"not queued again: {exc}")
    stop = threading.Event()
    options = EvalOptions(allow_data_mismatch=allow_data_mismatch)
    threads = [
        threading.Thread(
            target=run_worker,
            kwargs={
                "database": database,
                "name": f"serve-{i}",
                "lease_seconds": lease,
                "stop": stop,
                "options": options,
                "backend_args": args,
            },
            daemon=True,
        )  # fmt: skip
        for i in range(workers)
    ]
    token = admin_token or os.environ.get("MEDBOARD_ADMIN_TOKEN") or None
    # SIGTERM (a service manager's stop) ends the process as Ctrl-C does, through the finally
    # below: uvicorn handles both while it runs, then raises the signal again with the handler it
    # found, which by default would end the process on the spot, workers and all.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        for thread in threads:
            thread.start()
        out.print(f"medboard at http://{host}:{port}/ ({database.shown}, {workers} worker(s))")
        uvicorn.run(create_app(database, admin_token=token), host=host, port=port, log_level="info")
    finally:
        _stop_workers(threads, stop)


def _check_submitted(models: list[str], dtype: str) -> None:
    """Each model `--submit` names, checked as far as it can be without loading it."""
    from medboard.backends import registry
    from medboard.errors import MedboardError
    from medboard.queue.submissions import SubmitRequest, request_spec

    for model in models:
        try:
            registry.check(request_spec(SubmitRequest(model=model, dtype=dtype)))
        except MedboardError as exc:
            raise MedboardError(f"{model} cannot be submitted: {exc}") from None


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_workers(threads: list[threading.Thread], stop: threading.Event) -> None:
    """Stop in-process workers: idle ones at once, a busy one after the batch in progress, when
    it puts its job back in the queue (worker.run_worker); wait at most SHUTDOWN_WAIT."""
    stop.set()
    for thread in threads:
        thread.join(1.0)
    busy = [thread for thread in threads if thread.is_alive()]
    if busy:
        out.print(
            "stopping: a worker busy with a job puts it back in the queue after its batch "
            "(Ctrl-C again to quit now; the job is then taken again once its lease runs out)"
        )
    deadline = time.monotonic() + SHUTDOWN_WAIT
    for thread in busy:
        thread.join(max(deadline - time.monotonic(), 0))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.command("import-results")(import_results_command)
    app.command("export")(export_command)
    app.command("import-published")(import_published_command)
    app.command("submit")(submit_command)
    app.command("worker")(worker_command)
