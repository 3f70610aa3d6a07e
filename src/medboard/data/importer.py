"""Import benchmark files into the dataset store: detect the format, read, validate, store.

Every group read from a path is validated before any is written, so an import that fails
leaves the store as it was.
"""

import json
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from medboard.data import formats, hub_files
from medboard.data.formats import Group, ReadOptions
from medboard.data.records import check_record
from medboard.data.store import DataStore, SplitInfo
from medboard.errors import DataError

log = logging.getLogger(__name__)

Reader = Callable[[Path, ReadOptions], list[Group]]

READERS: dict[str, Reader] = {
    "jsonl": formats.read_normalized,
    "medqa_jsonl": formats.read_medqa_jsonl,
    "medmcqa_json": formats.read_medmcqa_json,
    "pubmedqa_json": formats.read_pubmedqa_json,
    "mmlu_csv": formats.read_mmlu_csv,
    "prompt_engine_json": formats.read_prompt_engine_json,
    "headqa_json": formats.read_headqa_json,
    "parquet": hub_files.read_parquet,
    "hf_disk": hub_files.read_hf_disk,
}

# Read together with the file that needs it (ori_pqal.json), never imported alone.
COMPANION = "pubmedqa_labels"

KNOWN = (
    "normalized .jsonl, MedQA/MedMCQA/PubMedQA/HEAD-QA release JSON, MMLU CSV, "
    "prompt_engine JSON, parquet or a save_to_disk folder"
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _exists(path: Path) -> bool:
    """Whether `path` names something here; a name the system cannot look up (a component over
    255 bytes, a NUL byte) names nothing, and is not an error of its own."""
    try:
        path.stat()
    except (OSError, ValueError):
        return False
    return True


def _classify_document(value: object) -> str | None:
    """The format of a file holding one JSON document."""
    if not isinstance(value, dict) or not value:
        return None
    if "exams" in value:
        return "headqa_json"
    first = next(iter(value.values()))
    if isinstance(first, dict) and {"QUESTION", "CONTEXTS"} <= set(first):
        return "pubmedqa_json"
    if isinstance(first, dict) and {"question", "options", "correct_answer"} <= set(first):
        return "prompt_engine_json"
    if all(label in ("yes", "no", "maybe") for label in value.values()):
        return COMPANION
    return None


def detect_file(path: Path) -> str | None:
    """The format of one file, by extension and content; None if it is not a known one."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".csv":
        line = formats.first_text_line(path) or ""
        is_hf = line.strip() == ",".join(formats.MMLU_HF_HEADER)
        return "mmlu_csv" if is_hf or formats.mmlu_csv_name(path) else None
    if suffix not in (".json", ".jsonl"):
        return None
    line = formats.first_text_line(path)
    if line is None:
        return None
    try:
        first = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        # Not JSON lines: one (pretty-printed) document.
        try:
            return _classify_document(json.loads(formats.read_text(path)))
        except (json.JSONDecodeError, RecursionError):
            return None
    if not isinstance(first, dict):
        return None
    keys = set(first)
    if {"id", "question", "options", "answer"} <= keys:
        return "jsonl"
    if {"opa", "opb", "opc", "opd", "cop"} <= keys:
        return "medmcqa_json"
    if {"question", "options", "answer_idx"} <= keys:
        return "medqa_jsonl"
    return _classify_document(first)


def detect(path: Path) -> str:
    """The format of a file or folder ('folder' = a folder of release files, read one by one)."""
    if not _exists(path):
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        fmt = detect_file(path)
        if fmt == COMPANION:
            raise DataError(
                f"{path}: this is the PubMedQA test label list; import ori_pqal.json "
                "(with this file beside it) instead"
            )
        if fmt is None:
            raise DataError(f"{path}: unknown data format (expected {KNOWN})")
        return fmt
    if hub_files.is_saved_dataset(path):
        return "hf_disk"
    # A task folder (<split>.jsonl) or a folder of task folders, as in ../shared/benchmarks:
    # only the normalized files are read, never the raw/ copies beside them.
    if formats.normalized_files(path) or any(
        formats.normalized_files(sub) for sub in path.iterdir() if sub.is_dir()
    ):
        return "jsonl"
    return "folder"


def _read_folder(path: Path, options: ReadOptions) -> list[Group]:
    """Every recognized file under `path`; parquet shards are read together."""
    groups: list[Group] = []
    parquet = False
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in file.relative_to(path).parts):
            continue
        fmt = detect_file(file)
        if fmt == "parquet":
            parquet = True
        elif fmt is None or fmt == COMPANION:
            log.info("skipping %s: not a data file of a known format", file)
        else:
            groups.extend(READERS[fmt](file, options))
    if parquet:
        groups.extend(hub_files.read_parquet(path, options))
    return groups


def read_path(path: Path, options: ReadOptions | None = None) -> list[Group]:
    """The groups a path holds, whatever its format (no store involved)."""
    options = options or formats.DEFAULT_OPTIONS
    fmt = detect(path)
    groups = _read_folder(path, options) if fmt == "folder" else READERS[fmt](path, options)
    if not groups:
        raise DataError(
            f"{path}: found no data to import (MMLU files of non-medical subjects are skipped "
            "unless all subjects are asked for)"
        )
    return groups


def _combine(groups: list[Group], source: str) -> list[Group]:
    """One group per (dataset, split); per-subject groups (MMLU files) are joined."""
    combined: dict[tuple[str, str], Group] = {}
    for group in groups:
        key = (group.dataset, group.split)
        previous = combined.get(key)
        if previous is None:
            combined[key] = group
            continue
        if not (previous.merge_subjects and group.merge_subjects):
            raise DataError(
                f"{source}: both {previous.source} and {group.source} hold "
                f"{group.dataset}/{group.split}; import them separately"
            )
        fmt = previous.fmt if previous.fmt == group.fmt else f"{previous.fmt}+{group.fmt}"
        combined[key] = replace(
            previous, records=previous.records + group.records, source=source, fmt=fmt
        )
    return list(combined.values())


def _by_subject(records: list[dict]) -> list[dict]:
    # Subjects in alphabetical order, each in its source order: the layout of mmlu_medical.
    return sorted(records, key=lambda r: str(r.get("subject") or ""))


def _merge_stored(group: Group, store: DataStore) -> Group:
    """A per-subject group joined with the stored records of the subjects it does not hold."""
    if not group.merge_subjects:
        return group
    if not store.has(group.dataset, group.split):
        return replace(group, records=_by_subject(group.records))
    subjects = {r.get("subject") for r in group.records}
    kept = [r for r in store.load(group.dataset, group.split) if r.get("subject") not in subjects]
    if not kept:
        return replace(group, records=_by_subject(group.records))
    others = sorted({str(r.get("subject")) for r in kept})
    return replace(
        group,
        records=_by_subject(kept + group.records),
        source=f"{group.source} (merged with the stored subjects {', '.join(others)})",
    )


def validate_group(group: Group) -> None:
    """The checks DataStore.put makes, run on every group before any is written."""
    for kind, name in (("dataset", group.dataset), ("split", group.split)):
        if not _NAME.match(name):
            raise DataError(f"{group.source}: {kind} name {name!r} is not a plain name")
    if not group.records:
        raise DataError(f"{group.source}: no records for {group.dataset}/{group.split}")
    seen: set[str] = set()
    for index, record in enumerate(group.records):
        check_record(record, f"{group.source} (record {index + 1})")
        if str(record["id"]) in seen:
            raise DataError(
                f"{group.source}: duplicate id {record['id']!r} in {group.dataset}/{group.split}"
            )
        seen.add(str(record["id"]))


def _override(
    groups: list[Group], path: Path, dataset: str | None, split: str | None
) -> list[Group]:
    if dataset is not None:
        names = sorted({g.dataset for g in groups})
        if len(names) > 1:
            raise DataError(f"{path}: holds several datasets ({', '.join(names)}); give no dataset")
        groups = [replace(g, dataset=dataset) for g in groups]
    if split is not None:
        splits = sorted({g.split for g in groups})
        if splits != [split]:
            raise DataError(f"{path}: holds the splits {', '.join(splits)}; give no split")
    return groups


def store_groups(groups: list[Group], store: DataStore, source: str) -> list[SplitInfo]:
    """Validate every group (joined per split, merged with stored subjects), then store them."""
    groups = [_merge_stored(g, store) for g in _combine(groups, source)]
    for group in groups:
        validate_group(group)
    return [store.put(g.dataset, g.split, g.records, source=g.source, fmt=g.fmt) for g in groups]


def import_path(
    path: Path,
    store: DataStore,
    dataset: str | None = None,
    split: str | None = None,
    all_subjects: bool = False,
) -> list[SplitInfo]:
    """Import a file or folder into the store; returns one SplitInfo per stored split.

    `dataset` renames the (single) dataset read; `split` is the split of a file whose name does
    not tell it. MMLU keeps only the six medical subjects unless `all_subjects`; MMLU files
    hold one subject each, so importing some subjects keeps the others already stored.
    """
    path = Path(path)
    options = ReadOptions(split=split, all_subjects=all_subjects)
    try:
        groups = _override(read_path(path, options), path, dataset, split)
    except OSError as exc:  # a folder or file under `path` that may not be read
        raise DataError(f"cannot read {exc.filename or path}: {exc.strerror}") from None
    return store_groups(groups, store, str(path))
