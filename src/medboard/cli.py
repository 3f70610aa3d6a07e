"""The `medboard` command line: tasks, backends, data; eval in cli_eval; the board in cli_board."""

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from medboard.cli_exam import exam_app
from medboard.cli_options import command_group, message_console, one_line_summaries
from medboard.errors import MedboardError
from medboard.federated.cli import fl_app

app = command_group(
    "medboard: evaluate language models on the medical QA suites.",
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = command_group("The local dataset store: import, pull, list.")
app.add_typer(data_app, name="data")
app.add_typer(fl_app, name="fl")
app.add_typer(exam_app, name="exam")

console = Console(stderr=True)
out = message_console()


@app.command("tasks")
def tasks_command() -> None:
    """List tasks and suites: sizes, language, license, and whether their data is present."""
    from medboard.data.records import content_hash
    from medboard.data.store import DataStore
    from medboard.tasks import REGISTRY, TRACKS

    store = DataStore()
    # The task's name is never cut: a table that fits 80 columns keeps the name, size, language,
    # data and license; a wider terminal also shows the dataset split and the metrics.
    wide = out.width >= 130
    table = Table(title="tasks", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("task", no_wrap=True)
    if wide:
        table.add_column("dataset/split", no_wrap=True)
    table.add_column("size", justify="right")
    table.add_column("lang")
    table.add_column("data")
    if wide:
        table.add_column("metrics")
    table.add_column("license", overflow="fold")
    restricted = False
    for task in REGISTRY.tasks():
        if not store.has(task.dataset, task.split):
            status = "[red]missing[/red]"
        else:
            stored = store.load(task.dataset, task.split)
            records = task.select(stored)
            ok = content_hash(records) == task.expected_hash
            status = (
                "[green]present[/green]" if ok else f"[yellow]differs ({len(records)})[/yellow]"
            )
            left_out = task.excluded(stored)
            if left_out:
                status += f" ({left_out} left out)"
        restricted = restricted or task.noncommercial
        terms = escape(task.license.split(" (")[0])  # in full: docs and the About page
        terms += " [bold red]NC[/bold red]" if task.noncommercial else ""
        cells = [task.name]
        cells += [f"{task.dataset}/{task.split}"] if wide else []
        cells += [str(task.expected_size), task.language, status]
        cells += [", ".join(task.metrics)] if wide else []
        table.add_row(*cells, terms)
    out.print(table, soft_wrap=False)
    if restricted:
        out.print("NC: non-commercial use only, or no license stated (docs/reference/tasks.md)")
    suites = Table(title="suites", box=box.SIMPLE_HEAD, pad_edge=False)
    suites.add_column("suite")
    suites.add_column("tasks", overflow="fold")
    suites.add_column("questions", justify="right")
    for name, members in REGISTRY.suites().items():
        size = sum(REGISTRY.task(t).expected_size or 0 for t in members)
        suites.add_row(name + (" (track)" if name in TRACKS else ""), ", ".join(members), str(size))
    out.print(suites, soft_wrap=False)
    out.print(f"data store: {store.root}")


@app.command("backends")
def backends_command() -> None:
    """List the backends a model can name (BACKEND:MODEL) and the arguments each takes (-M)."""
    import importlib.util

    from medboard.backends import registry

    for name, registration in sorted(registry.registrations().items()):
        try:
            chosen = registry.provider(name)
        except MedboardError as exc:
            out.print(f"[red]{name}[/red] ({escape(registration.origin)}): {escape(str(exc))}")
            continue
        missing = [m for m in chosen.requires if importlib.util.find_spec(m) is None]
        note = f" [yellow]needs: {escape(chosen.install)}[/yellow]" if missing else ""
        prefix = " (the default: no prefix)" if name == "hf" else ""
        if not getattr(chosen, "public", True):
            note += " [dim](not the public's unless MEDBOARD_PUBLIC_BACKENDS lists it)[/dim]"
        about = escape(f"{registration.origin}: {chosen.summary}")
        out.print(f"[bold]{name}[/bold]{prefix}, {about}{note}")
        table = Table(show_header=True, box=None, padding=(0, 2))
        for column in ("-M argument", "type", "default", "what"):
            table.add_column(column)
        for key, arg in sorted(chosen.args.items()):
            kind = "|".join(arg.choices) if arg.choices else arg.kind.__name__
            default = "" if arg.default is None else str(arg.default)
            roles = ["a worker's too"] if arg.per_run else []
            if arg.operators_only:
                roles.append("not a public submission's")
            what = arg.help + (f" ({'; '.join(roles)})" if roles else "")
            table.add_row(*(escape(cell) for cell in (key, kind, default, what)))
        if chosen.args:
            out.print(table, soft_wrap=False)


@data_app.command("import")
def data_import(
    path: Annotated[
        Path, typer.Argument(help="A file or folder: normalized JSONL, or a release format.")
    ],
    dataset: Annotated[str | None, typer.Option(help="Dataset name, for a single file.")] = None,
    split: Annotated[str | None, typer.Option(help="Split name, for a single file.")] = None,
) -> None:
    """Import evaluation data into the local store (each split is content-hashed)."""
    from medboard.data.importer import import_path
    from medboard.data.store import DataStore

    for info in import_path(path, DataStore(), dataset=dataset, split=split):
        out.print(
            f"{info.dataset}/{info.split}: {info.count} records, "
            f"hash {info.content_hash[:12]} ({info.format})"
        )


@data_app.command("pull")
def data_pull(
    task: Annotated[str, typer.Argument(help="Task name (see 'medboard tasks').")],
    revision: Annotated[
        str | None, typer.Option(help="Dataset revision (default: pinned).")
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(help="A local copy (save_to_disk folder or parquet) instead of the Hub."),
    ] = None,
) -> None:
    """Download a task's data from the Hugging Face Hub by pinned id and revision."""
    from medboard.data.hub import pull_task
    from medboard.data.store import DataStore
    from medboard.tasks import REGISTRY

    info = pull_task(REGISTRY.task(task), DataStore(), revision=revision, source=source)
    out.print(f"{info.dataset}/{info.split}: {info.count} records, hash {info.content_hash[:12]}")


@data_app.command("list")
def data_list() -> None:
    """List the splits in the local store."""
    from medboard.data.store import DataStore

    store = DataStore()
    table = Table()
    for column in ("dataset/split", "records", "hash", "format", "source", "imported"):
        table.add_column(column)
    for manifest in sorted(store.root.glob("*/*.manifest.json")):
        info = store.info(manifest.parent.name, manifest.name.removesuffix(".manifest.json"))
        if info is not None:
            table.add_row(
                f"{info.dataset}/{info.split}",
                str(info.count),
                info.content_hash[:12],
                info.format,
                info.source,
                info.imported_at,
            )
    out.print(table, soft_wrap=False)


def _register_commands() -> None:
    from medboard.cli_analysis import register as register_analysis
    from medboard.cli_board import register as register_board
    from medboard.cli_eval import register as register_eval

    register_eval(app)
    register_board(app)
    register_analysis(app)
    one_line_summaries(app)


_register_commands()


def one_line(message: str) -> str:
    """A message as one line: a database driver's or a library's message may span several (the
    SQL, a "Background on this error" link), and a path or a name given by a user may hold a
    newline."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith("(Background on this error")]
    return " ".join(kept) or message.strip()


def os_error_line(exc: OSError) -> str:
    """What an OSError that reached the top says, as the shell would: the file, then why."""
    why = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None and exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {why}"
    return f"{exc.filename}: {why}" if exc.filename is not None else why


def _fail(message: str) -> NoReturn:
    # escaped: a message's brackets are text (pip install 'medboard[hf]'), not markup
    console.print(f"[red]error:[/red] {escape(one_line(message))}", highlight=False, soft_wrap=True)
    sys.exit(1)


def main() -> None:
    """Entry point: a MedboardError is one line on stderr and exit code 1, no traceback. So is an
    OSError (a file that is missing, a directory where a file is expected, a permission, a full
    disk) and a file that is not UTF-8: they come from what the user pointed the command at, not
    from a bug (the commands name the file and line where they can: cli_options.utf8_located)."""
    try:
        app()
    except MedboardError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(os_error_line(exc))
    except UnicodeDecodeError as exc:  # a file read as text that is not UTF-8
        _fail(f"a file is not UTF-8 text: {exc}")
    except KeyboardInterrupt:  # outside a command (typer makes Ctrl-C in one exit code 130)
        sys.exit(130)
