"""Published leaderboard tables: read, check and store them as entries marked `published`.

Two formats:

- the FlowerTune medical table as published (header `rank,team,base_model,comm_cost_gb,average,
  pubmedqa,medmcqa,medqa,careqa,date`, scores in percent), recognized by its header;
- medboard's own format, CSV or JSON (a list of objects), one row per entry: `model` (required),
  `track` (or `--track`), one column per task named as `medboard tasks` names it with the score in
  percent, and optionally `team`, `base_model`, `revision`, `parameters`, `dtype`, `license`,
  `model_type`, `comm_cost_gb`, `date` (YYYY-MM-DD), `code_url` and `average` (checked against the
  mean of the task columns).

A file is imported once: its sha256 is kept with its entries, and importing it again changes
nothing. Every row is checked before anything is written.
"""

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from medboard.errors import DataError
from medboard.results.db import MODEL_TYPES, Database, Entry, Model, TaskScore
from medboard.tasks import REGISTRY, TRACKS

FLOWERTUNE_HEADER = [
    "rank", "team", "base_model", "comm_cost_gb", "average",
    "pubmedqa", "medmcqa", "medqa", "careqa", "date",
]  # fmt: skip
FLOWERTUNE_TASKS = {
    "pubmedqa": "pubmedqa",
    "medmcqa": "medmcqa",
    "medqa": "medqa_4options",
    "careqa": "careqa_en",
}
OPTIONAL = {
    "team", "base_model", "revision", "parameters", "dtype", "license", "model_type",
    "comm_cost_gb", "date", "code_url", "average", "track", "rank",
}  # fmt: skip
AVERAGE_TOLERANCE = 0.015  # points: published averages are rounded to 0.01
_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")


@dataclass
class PublishedRow:
    line: int
    track: str
    model: str
    scores: dict[str, float]  # task -> fraction
    team: str | None = None
    base_model: str | None = None
    revision: str = ""
    parameters: int | None = None
    dtype: str = ""
    license: str | None = None
    model_type: str = "unknown"
    comm_cost_gb: float | None = None
    date: str | None = None
    code_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportReport:
    source: str
    source_hash: str
    added: int
    already_imported: bool
    format: str


def _number(value: str | float | int | None, what: str, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} '{value}' is not a number") from None


def _score(value: Any, task: str, where: str) -> float:
    number = _number(value, f"score of {task}", where)
    if number is None:
        raise DataError(f"{where}: no score for {task}")
    if not 0.0 <= number <= 100.0:
        raise DataError(f"{where}: score of {task} is {number}, not a percentage in 0-100")
    return number / 100.0


def _check_average(row: PublishedRow, average: Any, where: str) -> None:
    published = _number(average, "average", where)
    if published is None or not row.scores:
        return
    mean = 100.0 * sum(row.scores.values()) / len(row.scores)
    if abs(mean - published) > AVERAGE_TOLERANCE:
        raise DataError(
            f"{where}: average {published} is not the mean of the task scores ({mean:.3f}); "
            "are the columns in the right order?"
        )
    row.extra["published_average"] = published


def _date(value: Any, where: str) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    if not _DATE.match(text):
        raise DataError(f"{where}: date '{text}' is not YYYY-MM-DD")
    return text


def flowertune_rows(records: list[dict[str, str]], name: str) -> list[PublishedRow]:
    rows = []
    for line, record in enumerate(records, start=2):
        where = f"{name} line {line}"
        team, base = record["team"].strip(), record["base_model"].strip()
        if not team or not base:
            raise DataError(f"{where}: team and base_model must not be empty")
        row = PublishedRow(
            line=line,
            track="flowertune_medical",
            model=f"{team} / {base}",
            scores={t: _score(record[c], t, where) for c, t in FLOWERTUNE_TASKS.items()},
            team=team,
            base_model=base,
            model_type="federated",
            comm_cost_gb=_number(record["comm_cost_gb"], "comm_cost_gb", where),
            date=_date(record["date"], where),
            extra={"published_rank": int(_number(record["rank"], "rank", where) or 0)},
        )
        _check_average(row, record["average"], where)
        rows.append(row)
    return rows


def generic_rows(records: list[dict[str, Any]], name: str, track: str | None) -> list[PublishedRow]:
    known = {t.name for t in REGISTRY.tasks()}
    rows = []
    for line, record in enumerate(records, start=2 if name.endswith(".csv") else 1):
        where = f"{name} {'line' if name.endswith('.csv') else 'entry'} {line}"
        record = {k.strip(): v for k, v in record.items() if k is not None}
        unknown = [k for k in record if k not in known and k not in OPTIONAL and k != "model"]
        if unknown:
            raise DataError(
                f"{where}: unknown column(s) {', '.join(unknown)} (task columns are named as "
                "`medboard tasks` lists them)"
            )
        model = str(record.get("model") or "").strip()
        if not model:
            raise DataError(f"{where}: no model name")
        row_track = str(record.get("track") or track or "").strip()
        if row_track not in TRACKS:
            raise DataError(f"{where}: track '{row_track}' is not one of {', '.join(TRACKS)}")
        scores = {t: _score(record[t], t, where) for t in record if t in known and record[t] != ""}
        if not scores:
            raise DataError(f"{where}: no task score (columns named after medboard tasks)")
        model_type = str(record.get("model_type") or "unknown")
        if model_type not in MODEL_TYPES:
            raise DataError(f"{where}: model_type '{model_type}' is not one of {MODEL_TYPES}")
        parameters = _number(record.get("parameters"), "parameters", where)
        row = PublishedRow(
            line=line,
            track=row_track,
            model=model,
            scores=scores,
            team=record.get("team") or None,
            base_model=record.get("base_model") or None,
            revision=str(record.get("revision") or ""),
            parameters=int(parameters) if parameters is not None else None,
            dtype=str(record.get("dtype") or ""),
            license=record.get("license") or None,
            model_type=model_type,
            comm_cost_gb=_number(record.get("comm_cost_gb"), "comm_cost_gb", where),
            date=_date(record.get("date"), where),
            code_url=record.get("code_url") or None,
        )
        _check_average(row, record.get("average"), where)
        rows.append(row)
    return rows


def read_published(path: Path, track: str | None = None) -> tuple[list[PublishedRow], str]:
    """The rows of a published table and the format's name; any bad row is an error."""
    if not path.is_file():
        raise DataError(f"published table {path} does not exist")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path.name}: not valid JSON ({exc})") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise DataError(f"{path.name}: expected a JSON list of objects, one per entry")
        rows, kind = generic_rows(records, path.name, track), "medboard-json"
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in reader.fieldnames or []]
        records = list(reader)
        if header == FLOWERTUNE_HEADER:
            rows, kind = flowertune_rows(records, path.name), "flowertune-medical"
        else:
            rows, kind = generic_rows(records, path.name, track), "medboard-csv"
    else:
        raise DataError(f"{path.name}: a published table is a .csv or .json file")
    if not rows:
        raise DataError(f"{path.name}: no entries")
    return rows, kind


def _model_for(session: Any, row: PublishedRow) -> Model:
    found = session.scalars(
        select(Model).where(
            Model.name == row.model,
            Model.revision == row.revision,
            Model.dtype == row.dtype,
            Model.adapter_hash == "",
        )
    ).first()
    if found is not None:
        return found
    model = Model(
        name=row.model,
        revision=row.revision,
        dtype=row.dtype,
        adapter_hash="",
        parameters=row.parameters,
        license=row.license,
        model_type=row.model_type,
        base_model=row.base_model,
    )
    session.add(model)
    return model


def import_published(database: Database, path: Path, track: str | None = None) -> ImportReport:
    """Store a published table's rows as entries of origin `published` (once per file)."""
    rows, kind = read_published(path, track)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with database.session() as session:
        existing = session.scalars(
            select(Entry.id).where(Entry.origin == "published", Entry.source_hash == digest)
        ).all()
        if existing:
            return ImportReport(str(path), digest, 0, True, kind)
        for row in rows:
            entry = Entry(
                track=row.track,
                model=_model_for(session, row),
                origin="published",
                source=f"{path.name} line {row.line}",
                source_hash=digest,
                team=row.team,
                comm_cost_gb=row.comm_cost_gb,
                code_url=row.code_url,
                date=row.date,
                extra=row.extra,
            )
            entry.scores = [
                TaskScore(task=task, metric="acc", value=value)
                for task, value in row.scores.items()
            ]
            session.add(entry)
            session.flush()  # a second row of the same model finds it
    return ImportReport(str(path), digest, len(rows), False, kind)
