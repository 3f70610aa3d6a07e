"""`medboard exam`: register, list and remove exams declared in a TOML file
(docs/reference/exams.md).

`add` checks the declaration and its records (medboard.tasks.declared), stores the records as the
dataset `exam_<name>`, split `test` (content-hashed), then keeps the declaration with what it
registered in `<home>/exams/<name>.toml`; each file is written whole or not at all, the
declaration last, so a refused or failed `add` leaves the exam as it was.
"""

import json
import shutil
import time
import tomllib
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medboard.cli_options import command_group, message_console
from medboard.errors import MedboardError
from medboard.paths import atomic_write_text
from medboard.tasks.declared import (
    NAME,
    REGISTERED,
    Exam,
    ExamDeclarationError,
    dataset,
    exams_dir,
    load_stored,
    read_declaration,
    stored,
)
from medboard.tasks.exam_data import read_text

exam_app = command_group("Your own exam, declared in a TOML file: add, list, remove.")
out = message_console()


def _toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes, and DEL, which TOML wants escaped too)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def stored_text(exam: Exam, declared: str) -> str:
    """The declaration as written, then what was registered: a [registered] table."""
    values = {
        "content_hash": _toml_string(exam.content_hash),
        "size": str(exam.size),
        "fields": "[" + ", ".join(_toml_string(field) for field in exam.fields) + "]",
        "source": _toml_string(f"{exam.source.resolve()} (data: {exam.data_path})"),
        "registered_at": _toml_string(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
    }
    table = "".join(f"{key} = {values[key]}\n" for key in REGISTERED)
    return f"{declared.rstrip()}\n\n# written by `medboard exam add`\n[registered]\n{table}"


def add_exam(path: Path, reserved: set[str]) -> tuple[Exam, Exam | None]:
    """Register a declaration (`reserved`: the built-in names); the exam, and the one of the
    same name it replaces (None: a new name, or a stored one that no longer loaded)."""
    from medboard.data.store import DataStore

    exam, records = read_declaration(path, reserved)
    kept = stored_text(exam, read_text(path, "declaration"))
    tomllib.loads(kept)  # what parsed parses with its table added: checked before any write
    target = exams_dir() / f"{exam.name}.toml"
    try:
        previous = load_stored(target) if target.exists() else None
    except ExamDeclarationError:
        previous = None
    kind = exam.data_path.suffix.lower().lstrip(".")
    DataStore().put(dataset(exam.name), "test", records, str(exam.data_path), f"exam_{kind}")
    atomic_write_text(target, kept)
    return exam, previous


@exam_app.command("add")
def exam_add(
    file: Annotated[Path, typer.Argument(help="The exam's declaration (.toml).")],
) -> None:
    """Check a declaration, import its questions into the data store (content-hashed) and
    register the exam as a task and a one-column track; the same name again replaces it."""
    from medboard.tasks import REGISTRY
    from medboard.tasks.declared import builtin_names

    exam, previous = add_exam(file, builtin_names(REGISTRY))
    shown = "public" if exam.public else "private"
    what = f"{exam.size} questions, hash {exam.content_hash[:12]}, {shown}, {exam.protocol}"
    done = f"registered exam {exam.name} ({exam.title}): {what}"
    if previous is not None:
        was = f"{previous.size} questions, hash {previous.content_hash[:12]}"
        done = f"replaced exam {exam.name} ({exam.title}), was {was}: now {what}"
        if previous.content_hash != exam.content_hash:
            done += "; its entries recorded before were evaluated on the other data"
    out.print(escape(f"{done}; evaluate: medboard eval --model MODEL --suite {exam.name}"))


@exam_app.command("list")
def exam_list() -> None:
    """The registered exams, and any stored declaration that no longer loads."""
    found = stored()
    if not found:
        out.print("no exam is registered: medboard exam add FILE")
        return
    for path, exam in found:  # one line each, whatever the terminal's width
        if isinstance(exam, Exam):
            shown = "public" if exam.public else "private"
            what = f"{exam.size} questions, hash {exam.content_hash[:12]}, {exam.protocol}"
            out.print(escape(f"{exam.name}: {exam.title}, {what}, {exam.choices}, {shown}"))
        else:
            out.print(escape(f"{path.stem}: does not load: {exam}"), style="red")


@exam_app.command("remove")
def exam_remove(
    name: Annotated[str, typer.Argument(help="The exam's name.")],
) -> None:
    """Unregister an exam and delete its questions from the data store; the entries recorded on
    its track stay in the database (shown again if the exam is added again)."""
    from medboard.data.store import DataStore

    target = exams_dir() / f"{name}.toml"
    if not NAME.fullmatch(name) or not target.is_file():
        known = ", ".join(path.stem for path, _ in stored()) or "none"
        raise MedboardError(f"no exam {name!r} is registered (registered: {known})")
    target.unlink()
    shutil.rmtree(DataStore().root / dataset(name), ignore_errors=True)
    out.print(escape(f"removed exam {name} and its questions from the data store"))
