"""The records of a declared exam (medboard.tasks.declared): normalized JSONL or a CSV, each
record checked, every refusal one line naming the file and the line: `FILE:LINE: reason`."""

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from medboard.data import records as normalized
from medboard.errors import DataError, MedboardError


class ExamDeclarationError(MedboardError):
    """A declaration, or its data, that cannot be registered: `FILE:LINE: reason`."""


def read_text(path: Path, what: str) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ExamDeclarationError(f"{path}:1: cannot read the {what}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")  # the byte-order mark Excel writes
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ExamDeclarationError(f"{path}:{line}: not UTF-8 text: save it as UTF-8") from None


def check_exam_record(record: Any, where: str) -> dict[str, Any]:
    """One record (a JSONL object, a CSV row), checked; its id made a string."""
    if not isinstance(record, dict):
        raise ExamDeclarationError(f"{where}: expected a JSON object")
    rid = record.get("id")
    if rid in (None, "") or isinstance(rid, bool) or not isinstance(rid, str | int):
        raise ExamDeclarationError(f"{where}: a record needs an id (a string or a number)")
    where = f"{where}: record {str(rid)!r}"
    options, answer = record.get("options"), record.get("answer")
    if isinstance(options, dict) and len(options) > 1 and answer not in (None, *options):
        raise ExamDeclarationError(
            f"{where}: answer {answer!r} is not among its options {', '.join(options)}"
        )
    try:
        normalized.check_record(record, where)
    except DataError as exc:
        raise ExamDeclarationError(str(exc)) from None
    empty = next((key for key, text in options.items() if not text.strip()), None)
    if empty is not None:
        raise ExamDeclarationError(f"{where}: option {empty} is empty")
    for key in ("context", "subject"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise ExamDeclarationError(f"{where}: {key} must be a string")
    return {**record, "id": str(rid)}


def csv_records(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    """(line, record) of a CSV with a header: id, question, A, B, ..., answer, and maybe context,
    subject and other columns (fields a template may name). Blank trailing options are left out
    (questions with fewer options). Cells are separated by commas, or by semicolons or tabs
    where the header line has more of those (a spreadsheet saved as CSV where the decimal
    separator is a comma writes semicolons)."""
    text = text.replace("\r\n", "\n")  # also inside quoted cells: no prompt ends a line with \r
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(",;\t", key=first.count)  # a tie (none at all): the comma, listed first
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return _csv_rows(path, rows)
    except csv.Error as exc:
        raise ExamDeclarationError(f"{path}:{rows.line_num}: invalid CSV: {exc}") from None


def _csv_rows(path: Path, rows: Any) -> list[tuple[int, dict[str, Any]]]:
    header = [cell.strip() for cell in next(r for r in rows if any(c.strip() for c in r))]
    letters = [cell for cell in header if re.fullmatch(r"[A-H]", cell)]
    needed = {"id", "question", "answer"} <= set(header) and len(letters) > 1
    if not needed or len(set(header)) < len(header) or letters != list("ABCDEFGH")[: len(letters)]:
        raise ExamDeclarationError(
            f"{path}:{rows.line_num}: the header must name id, question, options A, B, ... (in "
            f"order) and answer, each once (it has {', '.join(header)})"
        )
    found, start = [], rows.line_num + 1
    for row in rows:
        if any(cell.strip() for cell in row):
            if len(row) != len(header):
                why = f"{len(row)} cells, the header has {len(header)}"
                raise ExamDeclarationError(f"{path}:{start}: {why}")
            cells = dict(zip(header, row, strict=True))
            texts = [cells[key] for key in letters]
            while not texts[-1].strip() and len(texts) > 2:
                texts.pop()
            record: dict[str, Any] = {k: v for k, v in cells.items() if k not in letters and v}
            record["options"] = dict(zip(letters, texts, strict=False))
            record["answer"] = cells["answer"].strip()
            found.append((start, record))
        start = rows.line_num + 1
    return found


def read_records(path: Path, where: str) -> list[dict[str, Any]]:
    """The records of a data file, each checked (`DATA_FILE:LINE: reason`); `where` names the
    file where the declaration names it, for a file that is missing, empty or of no known kind."""
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise ExamDeclarationError(f"{where} is neither normalized JSONL (.jsonl) nor a CSV (.csv)")
    if not path.is_file():
        raise ExamDeclarationError(f"{where} does not exist ({path})")
    content = read_text(path, "data file")
    if not content.strip():
        raise ExamDeclarationError(f"{where} is empty")
    if path.suffix.lower() == ".csv":
        numbered: list[tuple[int, Any]] = list(csv_records(path, content))
    else:
        numbered = []
        for lineno, line in enumerate(content.split("\n"), start=1):
            try:
                numbered += [(lineno, json.loads(line))] if line.strip() else []
            except json.JSONDecodeError as exc:
                raise ExamDeclarationError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
    if not numbered:
        raise ExamDeclarationError(f"{where} has no questions")
    records, first = [], {}
    for lineno, raw in numbered:
        record = check_exam_record(raw, f"{path}:{lineno}")
        if record["id"] in first:
            why = f"record {record['id']!r}: its id is on line {first[record['id']]} already"
            raise ExamDeclarationError(f"{path}:{lineno}: {why}")
        first[record["id"]] = lineno
        records.append(record)
    return records
