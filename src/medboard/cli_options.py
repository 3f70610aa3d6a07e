"""Options shared by several commands, and how their input errors are reported."""

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

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


def command_group(help: str, **options: Any) -> typer.Typer:
    """A group of commands (medboard, and each of its groups): help when called bare, and one
    suggestion for a mistyped command, click's (typer's repeated it: "Did you mean 'eval'? Did
    you mean 'eval'?")."""
    return typer.Typer(help=help, no_args_is_help=True, suggest_commands=False, **options)


def one_line_summaries(group: typer.Typer) -> None:
    """Each command's line in its group's list of commands: the first paragraph of its
    docstring on one line. Typer's rich help kept the docstring's line breaks there, so a
    summary wrapped at 100 columns in the source broke mid-sentence in `medboard --help`."""
    for info in group.registered_commands:
        if info.short_help is None and info.callback is not None:
            first = (inspect.getdoc(info.callback) or "").split("\n\n")[0]
            info.short_help = " ".join(first.split())
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            one_line_summaries(sub.typer_instance)


def message_console() -> Console:
    """The console commands print to (stdout). soft_wrap: a message line (a path, a URL) is never
    broken where the terminal, or a log's 80 columns, ends; tables are printed with
    soft_wrap=False and still fit the width."""
    return Console(soft_wrap=True)


ModelArgs = Annotated[
    list[str] | None,
    typer.Option(
        "--model-arg",
        "-M",
        metavar="KEY=VALUE",
        help="A backend argument (repeatable), e.g. -M batch_tokens=8192 -M compile=off; "
        "`medboard backends` lists what each backend takes.",
    ),
]

DeviceOption = Annotated[
    str | None, typer.Option(help="cpu, cuda or cuda:N (default cpu).", show_default=False)
]


def backend_args(items: list[str] | None, **named: Any) -> dict[str, Any]:
    """-M items and the named options that stand for backend arguments (--dtype ...: None when
    not given), as one dict; the same argument given twice, differently, is refused."""
    from medboard.backends import parse_assignments
    from medboard.errors import MedboardError

    args: dict[str, Any] = parse_assignments(items)
    for key, value in named.items():
        if value is None:
            continue
        if key in args and str(args[key]) != str(value):
            raise MedboardError(f"{key} is given twice: -M {key}={args[key]} and {value}")
        args[key] = value
    return args


@contextmanager
def utf8_located(path: Path) -> Iterator[None]:
    """A file that is not UTF-8, read by the code inside, fails with one line naming the file,
    the line and the byte (data.formats.check_utf8, run only once the decoding failed): a bare
    UnicodeDecodeError names neither."""
    try:
        yield
    except UnicodeDecodeError as exc:
        from medboard.data.formats import check_utf8
        from medboard.errors import DataError

        if path.is_file():
            check_utf8(path)  # raises, with the place, where the file is the culprit
        raise DataError(f"{path}: a file is not UTF-8 text ({exc.reason})") from None
