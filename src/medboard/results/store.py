"""The run store: `<home>/runs/<key>/` holds a run's answer cache, samples and result.

A run is finished when its result.json exists (written last, atomically); anything else in the
folder belongs to a run that can resume.
"""

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medboard.paths import home
from medboard.results.schema import RunResult


class AnswerCache:
    """Answers per sample, committed one batch per transaction (it survives kill -9)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS answers (sample_id TEXT PRIMARY KEY, "
            "prompt_hash TEXT NOT NULL, answer TEXT NOT NULL)"
        )
        self.db.commit()

    def get_all(self) -> dict[str, tuple[str, dict[str, Any]]]:
        rows = self.db.execute("SELECT sample_id, prompt_hash, answer FROM answers")
        return {sid: (ph, json.loads(answer)) for sid, ph, answer in rows}

    def put_many(self, items: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?)",
                [(sid, ph, json.dumps(answer)) for sid, ph, answer in items],
            )

    def close(self) -> None:
        self.db.close()


class RunStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else home() / "runs"

    def folder(self, key: str) -> Path:
        return self.root / key[:24]

    def finished(self, key: str) -> RunResult | None:
        path = self.folder(key) / "result.json"
        if not path.exists():
            return None
        result = RunResult.model_validate_json(path.read_text(encoding="utf-8"))
        return result if result.key == key else None

    def cache(self, key: str) -> AnswerCache:
        return AnswerCache(self.folder(key) / "cache.sqlite")
