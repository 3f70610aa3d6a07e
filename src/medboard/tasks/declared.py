"""Exams declared in a small TOML file: a hospital's own questions, ranked without Python.

`medboard exam add FILE` (cli_exam.py) checks a declaration here (docs/reference/exams.md), puts its
records into the data store as `exam_<name>/test` and keeps the declaration with the content hash
and size it registered in `<home>/exams/<name>.toml`. At import the registry (medboard.tasks) gets a
Task and a one-column Track of the same name from each stored declaration (`registered`); one that
no longer loads is skipped with a one-line warning. Every refusal is one line: `FILE:LINE: reason`
(the records' checks are in exam_data.py).
"""

import hashlib
import re
import string
import sys
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from medboard.data.records import content_hash
from medboard.paths import home
from medboard.tasks.base import Registry, Sample, Task, Track, letter_sample, option_lines
from medboard.tasks.exam_data import ExamDeclarationError, read_records, read_text

FIELDS = ("name", "title", "language", "license", "data", "template", "choices", "protocol")
FIELDS += ("public",)
REQUIRED = ("name", "data", "template")
CHOICES = ("letters", "texts")  # the scored continuations: option letters, or option texts
PROTOCOLS = ("loglik", "generative", "cot")  # flowertune asks with FlowerTune's own instructions
REGISTERED = ("content_hash", "size", "fields", "source", "registered_at")
FAMILY = "exam"  # the Task.family of every declared exam
NAME = re.compile(r"[a-z0-9_]{1,50}")  # 50: the database's track column


@dataclass(frozen=True)
class Exam:
    """A checked declaration; `content_hash`, `size` and `fields` once its records are read."""

    name: str
    title: str
    language: str
    license: str
    data: str  # as declared: relative to the declaration
    template: str
    choices: str
    protocol: str
    public: bool
    source: Path  # the declaration
    content_hash: str = ""
    size: int = 0
    fields: tuple[str, ...] = ()  # the fields a template may name: those every record has

    @property
    def data_path(self) -> Path:
        return (self.source.parent / Path(self.data).expanduser()).resolve()


def exams_dir() -> Path:
    return home() / "exams"


def dataset(name: str) -> str:
    """The exam's dataset in the store (split `test`)."""
    return f"exam_{name}"


def line_of(text: str, key: str) -> int:
    """The line where a top-level key (or a table) is set; 1 when it is not found."""
    key = re.escape(key)
    quoted = rf"(?:{key}|\"{key}\"|'{key}')"
    pattern = re.compile(rf"\s*(?:\[+\s*{quoted}\s*[\].]|{quoted}\s*[=.])")
    lines = text.splitlines()
    return next((i for i, line in enumerate(lines, start=1) if pattern.match(line)), 1)


def parse(path: Path) -> tuple[str, dict[str, Any]]:
    """A declaration's text and its table; an empty file or invalid TOML fails."""
    text = read_text(path, "declaration")
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(found[1]) if found else max(len(text.splitlines()), 1)  # at end of document
        reason = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        raise ExamDeclarationError(f"{path}:{line}: invalid TOML: {reason}") from None
    if not table:  # nothing, or only comments
        raise ExamDeclarationError(f"{path}:1: empty file: declare {', '.join(REQUIRED)}")
    return text, table


def check_table(path: Path, text: str, table: dict[str, Any], reserved: Collection[str]) -> Exam:
    """The declared fields, each of its type and among its values; `reserved`: names taken."""

    def fail(key: str, reason: str) -> ExamDeclarationError:
        return ExamDeclarationError(f"{path}:{line_of(text, key)}: {reason}")

    for key in table:
        if key not in FIELDS:
            raise fail(key, f"unknown field {key!r} (fields: {', '.join(FIELDS)})")
    for key in REQUIRED:
        if key not in table:
            raise ExamDeclarationError(f"{path}:1: missing required field {key!r}")
    for key, value in table.items():
        kind = bool if key == "public" else str
        if not isinstance(value, kind):
            wanted = "true or false" if kind is bool else "a string"
            raise fail(key, f"{key} must be {wanted}, not {value!r}")
    name, language = table["name"], table.get("language", "en")
    if not NAME.fullmatch(name):
        raise fail("name", f"bad name {name!r}: only a-z, 0-9 and _, at most 50 characters")
    if name in reserved:
        raise fail("name", f"bad name {name!r}: a built-in task or suite is called so")
    if not re.fullmatch(r"[a-z]{2}", language):
        raise fail("language", f"language {language!r} is not an ISO 639-1 code (en, fr, ...)")
    for key, allowed in (("choices", CHOICES), ("protocol", PROTOCOLS)):
        if table.get(key, allowed[0]) not in allowed:
            raise fail(key, f"{key} {table[key]!r} is not one of {', '.join(allowed)}")
    if not table["data"].strip():
        raise fail("data", "data names no file")
    return Exam(
        name=name,
        title=table.get("title", "").strip() or name,
        language=language,
        license=table.get("license", "").strip(),
        data=table["data"],
        template=table["template"],
        choices=table.get("choices", CHOICES[0]),
        protocol=table.get("protocol", PROTOCOLS[0]),
        public=table.get("public", False),
        source=path,
    )


def check_template(exam: Exam, fail: Callable[[str], ExamDeclarationError]) -> None:
    """The template names only known fields (not the answer), the question, and the options
    where the option letters are scored."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(exam.template) if f is not None]
    except ValueError as exc:
        raise fail(f"template is not a format string ({exc}); write {{{{ for a brace") from None
    known = sorted({"question", "options", "context", *exam.fields} - {"answer"})
    for field in names:
        if field == "answer":
            raise fail("template shows {answer}: the model would be given the answer")
        if field not in known:
            raise fail(f"template names an unknown field {field!r} (fields: {', '.join(known)})")
    if "question" not in names:
        raise fail("template does not show {question}")
    if exam.choices == "letters" and "options" not in names:
        raise fail('template does not show {options}, whose letters choices = "letters" scores')


def read_declaration(path: Path, reserved: Collection[str] = ()) -> tuple[Exam, list[dict]]:
    """A declaration and its records, all checked; `reserved`: the built-in names."""
    text, table = parse(path)
    exam = check_table(path, text, table, reserved)
    where = f"{path}:{line_of(text, 'data')}: data file {exam.data!r}"
    records = read_records(exam.data_path, where)
    common = set.intersection(*(set(record) for record in records)) - {"answer", "options"}
    exam = replace(exam, size=len(records), content_hash=content_hash(records))
    exam = replace(exam, fields=tuple(sorted(common)))
    where = f"{path}:{line_of(text, 'template')}"
    check_template(exam, lambda reason: ExamDeclarationError(f"{where}: {reason}"))
    return exam, records


def load_stored(path: Path, reserved: Collection[str] = ()) -> Exam:
    """A registered exam from `<home>/exams/<name>.toml`: the declaration, and its [registered]
    table (content hash, size, fields); its records are in the store, not read here."""
    text, table = parse(path)
    done = table.pop("registered", None)
    exam = check_table(path, text, table, reserved)
    if not isinstance(done, dict) or any(key not in done for key in REGISTERED):
        raise ExamDeclarationError(f"{path}:1: no [registered] table: add the exam again")
    if exam.name != path.stem:
        why = f"exam {exam.name!r} is kept in {path.name}, not {exam.name}.toml"
        raise ExamDeclarationError(f"{path}:{line_of(text, 'name')}: {why}")
    fields, digest, size = done["fields"], done["content_hash"], done["size"]
    if not isinstance(fields, list) or not isinstance(digest, str) or not isinstance(size, int):
        raise ExamDeclarationError(f"{path}:{line_of(text, 'registered')}: damaged [registered]")
    exam = replace(exam, content_hash=digest, size=size, fields=tuple(map(str, fields)))
    where = f"{path}:{line_of(text, 'template')}"
    check_template(exam, lambda reason: ExamDeclarationError(f"{where}: {reason}"))
    return exam


def task_of(exam: Exam) -> Task:
    """A registered exam's Task: its template over its records, letters or texts scored."""
    texts, template = exam.choices == "texts", exam.template

    def to_sample(record: Mapping[str, Any]) -> Sample:
        sample = letter_sample(record, score_texts=texts)
        extras = {k: v for k, v in record.items() if k not in ("answer", "options")}
        return replace(sample, context=record.get("context"), metadata=MappingProxyType(extras))

    def render(sample: Sample) -> str:
        shown = {"question": sample.question, "options": option_lines(sample)}
        return template.format_map({**sample.metadata, **shown, "context": sample.context or ""})

    digest = hashlib.sha256(f"{template}\x00{exam.choices}".encode()).hexdigest()
    return Task(
        name=exam.name,
        version=f"1-{digest[:8]}",  # the prompt and the choices decide the numbers
        dataset=dataset(exam.name),
        split="test",
        render=render,
        to_sample=to_sample,
        expected_size=exam.size,
        expected_hash=exam.content_hash,
        family=FAMILY,
        title=exam.title,
        language=exam.language,
        license=exam.license,
        noncommercial=not exam.license,  # no license stated
        tracks=(exam.name,),
        private=not exam.public,
        not_permutable='its option texts are scored (choices = "texts")' if texts else "",
    )


def track_of(exam: Exam) -> Track:
    return Track(exam.name, exam.title, exam.protocol)


def stored() -> list[tuple[Path, Exam | ExamDeclarationError]]:
    """Each stored declaration, loaded, or why it does not load."""
    try:
        paths = sorted(exams_dir().glob("*.toml"))
    except OSError:
        return []
    found: list[tuple[Path, Exam | ExamDeclarationError]] = []
    for path in paths:
        try:
            found.append((path, load_stored(path)))
        except ExamDeclarationError as exc:
            found.append((path, exc))
    return found


def registered(registry: Registry) -> list[tuple[Task, Track]]:
    """The registered exams as (task, track), none named as what `registry` holds; one that
    does not load is skipped with a one-line warning on stderr."""
    taken = {task.name for task in registry.tasks()} | set(registry.suites())
    found = []
    for path, exam in stored():
        if isinstance(exam, Exam) and exam.name in taken:
            exam = ExamDeclarationError(f"{path}:1: a built-in task or suite is called {exam.name}")
        if isinstance(exam, Exam):
            found.append((task_of(exam), track_of(exam)))
        else:
            print(f"warning: exam skipped: {' '.join(str(exam).split())}", file=sys.stderr)
    return found


def builtin_names(registry: Registry) -> set[str]:
    """The names of a registry's tasks and suites, less the declared exams'."""
    exams = {task.name for task in registry.tasks() if task.family == FAMILY}
    return ({task.name for task in registry.tasks()} | set(registry.suites())) - exams
