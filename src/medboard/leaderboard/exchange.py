"""Runs in and out of the database in lm-evaluation-harness's format.

`import_all` stores an lm-eval output folder as one entry per model in it (each model's newest
run; `import_results` one model's) of origin `imported`, with its
provenance (the results file, its sha256, the lm-eval version, the model arguments); its samples
are kept as medboard records under `<home>/imports/`. `export_entries` writes entries that have
runs back out as lm-eval folders.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from medboard import __version__
from medboard.errors import DataError
from medboard.paths import atomic_write_text, home
from medboard.results.db import Database, Entry, Model, Run, TaskScore
from medboard.results.lmeval import TaskOutput, read_lmeval, results_folders, write_lmeval
from medboard.tasks import REGISTRY, TRACKS


@dataclass(frozen=True)
class ImportedReport:
    entry_id: int | None  # None: imported already
    track: str
    tasks: list[str]
    skipped: list[str]
    results_file: str


def _track_for(tasks: list[str], track: str | None) -> str:
    if track is not None:
        if track not in TRACKS:
            raise DataError(f"unknown track '{track}' (choose from {', '.join(TRACKS)})")
        return track

    def covered(name: str) -> tuple[int, float]:  # most tasks, then the largest share
        track_tasks = {t.name for t in REGISTRY.resolve(name, None)}
        shared = len(set(tasks) & track_tasks)
        return shared, shared / len(track_tasks)

    return max(TRACKS, key=covered)


def import_all(database: Database, path: Path, track: str | None = None) -> list[ImportedReport]:
    """Store each model's newest run under an lm-eval output folder (or one results file) as an
    imported entry, in the order of their folders (`medboard import-results`: it imported only
    the newest run of all, so an export of several entries came back as one)."""
    return [import_results(database, folder, track) for folder in results_folders(path)]


def import_results(database: Database, path: Path, track: str | None = None) -> ImportedReport:
    """Store one model's lm-eval run (a results file, or the newest under a folder that holds
    one model's runs) as an imported entry."""
    folders = results_folders(path)
    if len(folders) > 1:
        names = ", ".join(f.name for f in folders)
        raise DataError(
            f"{path} holds the runs of {len(folders)} models ({names}): import one model's "
            "folder, or all of them with import_all"
        )
    output = read_lmeval(path, {t.name for t in REGISTRY.tasks()})
    names = [t.task for t in output.tasks]
    chosen = _track_for(names, track)
    with database.session() as session:
        exists = session.scalars(
            select(Entry).where(
                Entry.origin == "imported", Entry.source_hash == output.results_hash
            )
        ).first()
        if exists is not None:
            return ImportedReport(
                None, exists.track, names, output.skipped, str(output.results_file)
            )
        model = session.scalars(
            select(Model).where(
                Model.name == output.model,
                Model.revision == "",
                Model.dtype == output.dtype,
                Model.adapter_hash == "",
            )
        ).first() or Model(name=output.model, revision="", dtype=output.dtype)
        session.add(model)
        session.flush()
        entry = Entry(
            track=chosen,
            model=model,
            origin="imported",
            source=str(output.results_file),
            source_hash=output.results_hash,
            date=output.date,
            extra={"lm_eval_version": output.lm_eval_version, "config": output.config},
        )
        session.add(entry)
        folder = home() / "imports" / output.results_hash[:16]
        for task in output.tasks:
            samples_path = ""
            if task.samples:
                samples_path = str(folder / f"samples_{task.task}.jsonl")
                atomic_write_text(
                    Path(samples_path),
                    "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in task.samples),
                )
            key = hashlib.sha256(f"lm-eval:{output.results_hash}:{task.task}".encode()).hexdigest()
            run = Run(
                key=key,
                model_id=model.id,
                task=task.task,
                task_version=task.version,
                protocol="lm-eval/loglik",
                data_hash="",
                harness="lm-eval",
                harness_version=output.lm_eval_version,
                n_samples=task.n,
                samples_path=samples_path,
                result={"lmeval_task": task.lmeval_task, "scores": task.scores},
            )
            session.add(run)
            session.flush()
            for metric, (value, stderr) in task.scores.items():
                entry.scores.append(
                    TaskScore(
                        task=task.task, metric=metric, value=value, stderr=stderr, n=task.n,
                        run_id=run.id,
                    )
                )  # fmt: skip
        session.flush()
        return ImportedReport(entry.id, chosen, names, output.skipped, str(output.results_file))


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_")[:80] or "model"


def export_entries(database: Database, out: Path, entry_ids: list[int] | None = None) -> list[Path]:
    """Write each entry with runs as an lm-eval output folder; returns the results files."""
    written = []
    with database.session() as session:
        query = select(Entry).where(Entry.origin.in_(("evaluated", "imported")))
        if entry_ids:
            query = query.where(Entry.id.in_(entry_ids))
        entries = session.scalars(query.order_by(Entry.id)).all()
        if entry_ids and len(entries) != len(set(entry_ids)):
            missing = sorted(set(entry_ids) - {e.id for e in entries})
            raise DataError(f"no evaluated or imported entry with id {missing}")
        for entry in entries:
            by_task: dict[str, TaskOutput] = {}
            for score in entry.scores:
                run = session.get(Run, score.run_id) if score.run_id else None
                task = by_task.get(score.task)
                if task is None:
                    samples = []
                    if run is not None and run.samples_path and Path(run.samples_path).exists():
                        lines = Path(run.samples_path).read_text(encoding="utf-8").splitlines()
                        samples = [json.loads(line) for line in lines if line.strip()]
                    task = by_task[score.task] = TaskOutput(
                        task=score.task,
                        lmeval_task=score.task,
                        scores={},
                        n=score.n or len(samples),
                        version=run.task_version if run else "",
                        samples=samples,
                    )
                task.scores[score.metric] = (score.value, score.stderr)
            folder = out / f"{entry.id}-{_safe(entry.model.name)}"
            written.append(
                write_lmeval(folder, entry.model.name, entry.model.dtype, list(by_task.values()),
                             __version__)
            )  # fmt: skip
    return written
