"""The dataset store: `<home>/data/<dataset>/<split>.jsonl` plus a manifest with its hashes.

Writes are atomic (a temporary file renamed into place), so an import that fails half-way leaves
what was stored before untouched.
"""

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medboard.data.records import check_record, content_hash, read_jsonl
from medboard.data.sources import TaskSource
from medboard.errors import DataError
from medboard.paths import atomic_write_text, home


@dataclass(frozen=True)
class SplitInfo:
    dataset: str
    split: str
    count: int
    content_hash: str
    source: str
    format: str
    imported_at: str


@dataclass(frozen=True)
class TaskData:
    records: list[dict[str, Any]]
    content_hash: str
    info: SplitInfo


class DataStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else home() / "data"

    def _paths(self, dataset: str, split: str) -> tuple[Path, Path]:
        folder = self.root / dataset
        return folder / f"{split}.jsonl", folder / f"{split}.manifest.json"

    def put(
        self,
        dataset: str,
        split: str,
        records: Sequence[Mapping[str, Any]],
        source: str,
        fmt: str,
    ) -> SplitInfo:
        """Store a split (validated first; replaces the split only once all is well)."""
        if not records:
            raise DataError(f"{source}: no records for {dataset}/{split}")
        seen: set[str] = set()
        for index, record in enumerate(records):
            check_record(record, f"{source} (record {index + 1})")
            if str(record["id"]) in seen:
                raise DataError(f"{source}: duplicate id {record['id']!r} in {dataset}/{split}")
            seen.add(str(record["id"]))
        data_path, manifest_path = self._paths(dataset, split)
        info = SplitInfo(
            dataset=dataset,
            split=split,
            count=len(records),
            content_hash=content_hash(records),
            source=source,
            format=fmt,
            imported_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        atomic_write_text(data_path, lines)
        atomic_write_text(manifest_path, json.dumps(info.__dict__, indent=2) + "\n")
        return info

    def info(self, dataset: str, split: str) -> SplitInfo | None:
        _, manifest_path = self._paths(dataset, split)
        if not manifest_path.exists():
            return None
        return SplitInfo(**json.loads(manifest_path.read_text(encoding="utf-8")))

    def has(self, dataset: str, split: str) -> bool:
        data_path, _ = self._paths(dataset, split)
        return data_path.exists() and self.info(dataset, split) is not None

    def load(self, dataset: str, split: str) -> list[dict[str, Any]]:
        data_path, _ = self._paths(dataset, split)
        if not data_path.exists():
            raise DataError(f"no data for {dataset}/{split} in {self.root}")
        return list(read_jsonl(data_path))

    def task_data(self, task: TaskSource, allow_mismatch: bool = False) -> TaskData:
        """The records a task evaluates, checked against the task's expected content hash."""
        info = self.info(task.dataset, task.split)
        if info is None or not self._paths(task.dataset, task.split)[0].exists():
            raise DataError(
                f"no data for task '{task.name}' ({task.dataset}/{task.split}): "
                f"run 'medboard data import PATH' or 'medboard data pull {task.name}'"
            )
        records = task.select(self.load(task.dataset, task.split))
        if not records:
            raise DataError(
                f"data for task '{task.name}' has no records of subject '{task.subject}' "
                f"in {task.dataset}/{task.split}"
            )
        digest = content_hash(records)
        if task.expected_hash and digest != task.expected_hash and not allow_mismatch:
            raise DataError(
                f"data for task '{task.name}' has content hash {digest[:12]}, expected "
                f"{task.expected_hash[:12]} ({len(records)} records, expected "
                f"{task.expected_size}): it is another copy or version of the benchmark; "
                "pass --allow-data-mismatch to evaluate it anyway"
            )
        return TaskData(records=records, content_hash=digest, info=info)
