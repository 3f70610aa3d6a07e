"""Contamination checks that read the data store: benchmark items against a training corpus.

Shared by `medboard contamination` and `medboard fl submit` (which stores the check of the
federated run's training data in its leaderboard entry).
"""

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from medboard.errors import DataError

DEFAULT_N = 8
DEFAULT_MIN_RATIO = 0.5


def corpus_texts(path: Path, field: str | None) -> Iterator[str]:
    """Documents of a corpus: JSONL (a field, or every string value of each object) or text
    (one document per line)."""
    if not path.is_file():
        raise DataError(f"corpus {path} does not exist")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if path.suffix != ".jsonl":
                yield line
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise DataError(f"{path}:{number} is not a JSON object") from None
            if not isinstance(record, Mapping):
                raise DataError(f"{path}:{number} is not a JSON object")
            if field is not None:
                if field not in record:
                    raise DataError(f"{path}:{number} has no field '{field}'")
                yield str(record[field])
            else:
                yield "\n".join(v for v in record.values() if isinstance(v, str))


def task_items(
    suite: str | None, tasks: str | None, allow_mismatch: bool
) -> dict[str, dict[str, list[str]]]:
    """task -> question id -> the item's text segments (context, question, options)."""
    from medboard.data.store import DataStore
    from medboard.scoring.contamination import item_segments
    from medboard.tasks import REGISTRY

    store = DataStore()
    items: dict[str, dict[str, list[str]]] = {}
    for task in REGISTRY.resolve(suite, tasks):
        data = store.task_data(task, allow_mismatch=allow_mismatch)
        samples = (task.to_sample(record) for record in data.records)
        items[task.name] = {
            s.id: list(item_segments(s.question, tuple(s.options.values()), s.context))
            for s in samples
        }
    return items


def contamination_summary(
    corpus: Path,
    suite: str | None,
    tasks: str | None = None,
    field: str | None = None,
    allow_mismatch: bool = False,
    n: int = DEFAULT_N,
    min_ratio: float = DEFAULT_MIN_RATIO,
) -> dict[str, Any]:
    """JSON-ready per-task contamination of tasks by a corpus file (for an entry's extra)."""
    from medboard.scoring.contamination import contamination_report, index_corpus

    items = task_items(suite, tasks, allow_mismatch)
    index = index_corpus(corpus_texts(corpus, field), n=n)
    report = contamination_report(items, index, min_ratio=min_ratio)
    return {
        "corpus": corpus.name,
        "distinct_ngrams": len(index.hashes),
        "corpus_sha256": hashlib.sha256(corpus.read_bytes()).hexdigest(),
        "n": n,
        "min_ratio": min_ratio,
        "tasks": {
            task: {
                "items": found.n_items,
                "flagged": found.n_flagged,
                "share": found.share,
                "too_short": found.n_too_short,
                "examples": list(found.example_ids),
            }
            for task, found in report.items()
        },
    }
