"""What the model page shows: scores with 95% intervals, per-subject scores, provenance, samples.

Samples are read from the JSONL file a run points to (`Run.samples_path`), one object per
question: id, choices, logprobs (one per choice), pred, gold, acc and maybe subject. Only paths
recorded in the database are ever opened, never a path taken from a request. The rows shown get
their question and option texts from the data store where the dataset's license allows
(`sample_text.py`).

Every read is a fixed number of queries, whatever the size of the board: the entry with its
model, its scores, and the runs behind them.
"""

import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from medboard.leaderboard.analysis import correct as score_of
from medboard.leaderboard.analysis import split_shift
from medboard.leaderboard.ranking import TRACKS, interval, track_spec
from medboard.results.db import Entry, Run, TaskScore
from medboard.web.cells import label, safe_cell, task_terms
from medboard.web.sample_text import private_task, task_texts, with_texts

SAMPLES_PER_PAGE = 20
MAX_SAMPLES_PER_PAGE = 200
Z95 = 1.96


class NotFoundError(LookupError):
    """An entry, task or file the request names does not exist."""


@lru_cache(maxsize=32)
def _read_samples(path: str, _mtime_ns: int, _size: int) -> tuple[dict[str, Any], ...]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a torn last line of a file being written
    return tuple(records)


def read_samples(path: str) -> tuple[dict[str, Any], ...] | None:
    """The records of a samples file (cached while the file is unchanged); None when absent."""
    if not path:
        return None
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return _read_samples(path, stat.st_mtime_ns, stat.st_size)


def softmax(logprobs: list[float]) -> list[float]:
    """Probabilities of the choices, relative to each other."""
    if not logprobs:
        return []
    top = max(logprobs)
    weights = [math.exp(x - top) if math.isfinite(x) else 0.0 for x in logprobs]
    total = sum(weights) or 1.0
    return [w / total for w in weights]


def correct(record: dict[str, Any]) -> bool:
    return bool(score_of(record))


def sample_row(index: int, record: dict[str, Any]) -> dict[str, Any]:
    choices = [str(c) for c in record.get("choices") or []]
    logprobs = [float(x) for x in record.get("logprobs") or []]
    probs = softmax(logprobs) if len(logprobs) == len(choices) else [None] * len(choices)
    return {
        "index": index,
        "id": str(record.get("id", index)),
        "subject": record.get("subject"),
        "choices": [
            {"text": text, "logprob": lp, "prob": p}
            for text, lp, p in zip(choices, logprobs or [None] * len(choices), probs, strict=False)
        ],
        "pred": record.get("pred"),
        "gold": record.get("gold"),
        "correct": correct(record),
    }


def subject_scores(records: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """acc per subject with a 95% interval (the mean's stderr, as lm-eval computes it)."""
    groups: dict[str, list[bool]] = {}
    for record in records:
        if record.get("subject"):
            groups.setdefault(str(record["subject"]), []).append(correct(record))
    rows = []
    for subject, values in sorted(groups.items()):
        n = len(values)
        acc = sum(values) / n
        stderr = math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else None
        rows.append(
            {
                "subject": subject,
                "n": n,
                "acc": acc,
                "stderr": stderr,
                "interval": list(interval(acc, stderr) or []) or None,
            }
        )
    return rows


@dataclass(frozen=True)
class SampleQuery:
    task: str | None = None
    page: int = 1
    per_page: int = SAMPLES_PER_PAGE
    only: str = ""  # "", "correct" or "wrong"


def _run_json(run: Run) -> dict[str, Any]:
    spec = (run.result or {}).get("spec") or {}
    return {
        "task": run.task,
        "key": run.key,
        "task_version": run.task_version,
        "protocol": run.protocol,
        "data_hash": run.data_hash,
        "harness": run.harness,
        "harness_version": run.harness_version,
        "n_samples": run.n_samples,
        "prompt_tokens": run.prompt_tokens,
        "wall_seconds": run.wall_seconds,
        "finished_at": run.finished_at,
        "model_revision": spec.get("model_revision"),
        "dtype": spec.get("dtype"),
        "matmul": spec.get("matmul"),
        "compiled": spec.get("compiled"),
        "attention": spec.get("attention"),
        "activation": spec.get("activation"),
        "dataset": spec.get("dataset"),
        "split": spec.get("split"),
        "limit": spec.get("limit"),
        "has_samples": read_samples(run.samples_path) is not None,
    }


def entry_runs(session: Session, entry_id: int) -> dict[str, Run]:
    """The run behind each task's scores, by task."""
    rows = session.execute(
        select(TaskScore.task, Run)
        .join(Run, TaskScore.run_id == Run.id)
        .where(TaskScore.entry_id == entry_id)
    ).all()
    return {task: run for task, run in rows}


def get_entry(session: Session, entry_id: int) -> Entry:
    """The entry with its model and scores loaded (two queries)."""
    entry = session.scalar(
        select(Entry)
        .options(joinedload(Entry.model), selectinload(Entry.scores))
        .where(Entry.id == entry_id)
    )
    if entry is None:
        raise NotFoundError(f"no entry {entry_id}")
    return entry


def by_language(scores: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scores grouped by language, the languages in the order they first come."""
    order = {code: i for i, code in enumerate(dict.fromkeys(s["language"] for s in scores))}
    return sorted(scores, key=lambda s: order[s["language"]])  # stable: task order within


def shown(task: str, run: Run) -> bool:
    """Whether a run's samples are offered: kept, and not those of a private exam."""
    return not private_task(task) and read_samples(run.samples_path) is not None


def _task_order(track: str, tasks: set[str]) -> list[str]:
    order = list(track_spec(track).task_names) if track in TRACKS else []
    return [t for t in order if t in tasks] + sorted(tasks - set(order))


def samples_page(runs: dict[str, Run], query: SampleQuery) -> dict[str, Any]:
    """One page of a task's sample table (none for a private exam: its choices can be its
    option texts)."""
    tasks = [
        t for t in runs if not private_task(t) and read_samples(runs[t].samples_path) is not None
    ]
    task = query.task if query.task in tasks else (tasks[0] if tasks else None)
    if query.task and query.task not in runs:
        raise NotFoundError(f"no run of task '{query.task}' for this entry")
    if task is None:
        return {"task": None, "tasks": [], "total": 0, "rows": [], "page": 1, "pages": 1}
    records = read_samples(runs[task].samples_path) or ()
    indexed = list(enumerate(records))
    if query.only in ("correct", "wrong"):
        keep = query.only == "correct"
        indexed = [(i, r) for i, r in indexed if correct(r) == keep]
    pages = max(1, math.ceil(len(indexed) / query.per_page))
    page = min(max(query.page, 1), pages)
    chosen = indexed[(page - 1) * query.per_page : page * query.per_page]
    rows = [sample_row(i, r) for i, r in chosen]
    texts = task_texts(task, runs[task].data_hash, [row["id"] for row in rows])
    return {
        "task": task,
        "tasks": tasks,
        "only": query.only,
        "total": len(indexed),
        "page": page,
        "pages": pages,
        "per_page": query.per_page,
        "rows": [with_texts(row, texts.samples.get(row["id"])) for row in rows],
        "text": {"shown": texts.shown, "note": texts.note},
    }


def model_data(
    session: Session, entry_id: int, query: SampleQuery, found_runs: dict[str, Run] | None = None
) -> dict[str, Any]:
    """Everything the model page shows; the JSON twin returns exactly this. `found_runs`: the
    entry's runs (`entry_runs`) when the caller has them already."""
    entry = get_entry(session, entry_id)
    model = entry.model
    if found_runs is None:
        found_runs = entry_runs(session, entry_id)
    runs = {t: found_runs[t] for t in _task_order(entry.track, set(found_runs))}
    by_task: dict[str, dict[str, Any]] = {}
    for score in entry.scores:
        metrics = by_task.setdefault(score.task, {})
        metrics[score.metric] = {
            "value": score.value,
            "stderr": score.stderr,
            "n": score.n,
            "interval": list(interval(score.value, score.stderr) or []) or None,
        }
    scores = by_language(  # permuted copies (task@shiftK) are shown under robustness instead
        [
            {"task": t, "label": label(t), "metrics": by_task[t], **task_terms(split_shift(t)[0])}
            for t in _task_order(entry.track, set(by_task))
            if split_shift(t)[1] is None
        ]
    )
    subjects = {}
    for task, run in runs.items():
        if split_shift(task)[1] is not None:
            continue  # a permuted copy: the same subjects as its task
        records = read_samples(run.samples_path)
        found = subject_scores(records) if records else []
        if len(found) > 1:  # a task of one subject says nothing more than its score
            subjects[task] = found
    base = f"/model/{entry.id}"
    return {
        "entry": {
            "id": entry.id,
            "track": entry.track,
            "origin": entry.origin,
            "source": entry.source,
            "source_hash": entry.source_hash,
            "team": entry.team,
            "comm_cost_gb": entry.comm_cost_gb,
            "code_url": entry.code_url,
            "date": entry.date,
            "hidden": entry.hidden,
            "extra": entry.extra or {},
        },
        "model": {
            "name": model.name,
            "revision": model.revision,
            "dtype": model.dtype,
            "adapter": model.adapter,
            "adapter_hash": model.adapter_hash,
            "parameters": model.parameters,
            "license": model.license,
            "model_type": model.model_type,
            "base_model": model.base_model,
        },
        "scores": scores,
        "subjects": subjects,
        "runs": [_run_json(run) for run in runs.values()],
        "samples": samples_page(runs, query),
        "downloads": {
            task: {
                "result": f"{base}/runs/{task}/result.json",
                "samples": f"{base}/runs/{task}/samples.jsonl" if shown(task, run) else None,
                "samples_csv": f"{base}/runs/{task}/samples.csv" if shown(task, run) else None,
            }
            for task, run in runs.items()
        },
    }


def run_for(session: Session, entry_id: int, task: str) -> Run:
    get_entry(session, entry_id)
    run = entry_runs(session, entry_id).get(task)
    if run is None:
        raise NotFoundError(f"entry {entry_id} has no run of task '{task}'")
    return run


def download_license(task: str) -> str | None:
    """The license a download of a task's samples carries: that of a task whose data is for
    non-commercial use only or states none; None for the others."""
    terms = task_terms(split_shift(task)[0])
    if not terms["noncommercial"]:
        return None
    return f"{terms['license']} (non-commercial use only; see docs/reference/tasks.md)"


def samples_jsonl(path: str, license: str | None) -> Iterator[bytes]:
    """The run's samples file as recorded; each record with a `license` field when given."""
    with open(path, "rb") as handle:
        for line in handle:
            if license is None or not line.strip():
                yield line
            else:
                yield (json.dumps({**json.loads(line), "license": license}) + "\n").encode()


def samples_csv(records: tuple[dict[str, Any], ...], license: str | None = None) -> str:
    """A task's samples: one row per question, each choice's probability in percent; a last
    `license` column when the task's data carries one (download_license)."""
    width = max((len(r.get("choices") or []) for r in records), default=0)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["index", "id", "subject", "pred", "gold", "correct"]
    for k in range(width):
        header += [f"choice_{k}", f"prob_{k}"]
    writer.writerow([*header, "license"] if license else header)
    for index, record in enumerate(records):
        row = sample_row(index, record)
        cells: list[Any] = [
            index,
            safe_cell(row["id"]),
            safe_cell(str(row["subject"] or "")),
            row["pred"],
            row["gold"],
            int(row["correct"]),
        ]
        for choice in row["choices"]:
            prob = choice["prob"]
            cells += [safe_cell(choice["text"]), "" if prob is None else f"{100 * prob:.2f}"]
        if license:  # the license in its own column, after the widest row's choices
            cells += [""] * (2 * width - (len(cells) - 6)) + [safe_cell(license)]
        writer.writerow(cells)
    return out.getvalue()
