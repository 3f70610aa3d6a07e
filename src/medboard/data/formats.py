"""Readers that turn benchmark files into normalized records, grouped by dataset and split.

Each reader takes a path (and ReadOptions) and returns a list of Groups, each one
`(dataset, split, records)` plus where it came from. The record layout is that of
../shared/benchmarks (see records.py); the readers of the original release formats reproduce
those normalized files exactly, so their content hashes agree.

Formats:
  jsonl            normalized `<split>.jsonl`: one file, a task folder, or a folder of task folders
  medqa_jsonl      MedQA original release (phrases_no_exclude_{test,dev,train}.jsonl)
  medmcqa_json     MedMCQA original release, JSON lines with 1-based `cop` (dev.json, train.json)
  pubmedqa_json    PubMedQA ori_pqal.json (+ test_ground_truth.json beside it)
  mmlu_csv         MMLU hendrycks CSV (no header; `<subject>_<split>.csv`) or its HF export
                   (header question,choice0..choice3,answer)
  prompt_engine_json  HPAI-BSC prompt_engine exports {uid: {question, options, correct_answer}}
                   (careqa_test.json, mmlu_<subject>_val.json, the MedMCQA train sample)
  headqa_json      HEAD-QA v1.0 release ({"exams": {...}}), any language

Hub-schema data (parquet files, `save_to_disk` folders) is read by medboard.data.hub_files with
the converters of the Hub pull.
"""

import csv
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medboard.data import converters as conv
from medboard.data.converters import MMLU_MEDICAL_SUBJECTS, Record
from medboard.data.records import json_lines, read_jsonl
from medboard.errors import DataError


@dataclass(frozen=True)
class Group:
    """The records of one dataset split, read from `source` in format `fmt`.

    `merge_subjects`: the group holds only the subjects it names (MMLU files come one subject
    per file), so storing it keeps the other subjects already stored in that split.
    """

    dataset: str
    split: str
    records: list[Record]
    source: str
    fmt: str
    merge_subjects: bool = False


@dataclass(frozen=True)
class ReadOptions:
    split: str | None = None  # the split of a file whose name does not say it
    all_subjects: bool = False  # MMLU: keep every subject, not only the six medical ones
    subjects: tuple[str, ...] = MMLU_MEDICAL_SUBJECTS

    def keeps(self, subject: str) -> bool:
        return self.all_subjects or subject in self.subjects

    @property
    def mmlu_dataset(self) -> str:
        return "mmlu" if self.all_subjects else "mmlu_medical"


DEFAULT_OPTIONS = ReadOptions()

_SPLIT_TOKENS = {"test", "dev", "val", "valid", "validation", "train"}


def split_from_name(path: Path, options: ReadOptions) -> str:
    """The split a file's name says (`..._test.jsonl`, `dev.json`), or the one given."""
    if options.split:
        return options.split
    tokens = [t for t in re.split(r"[_\-.]", path.name.lower()) if t in _SPLIT_TOKENS]
    if len(set(tokens)) != 1:
        raise DataError(f"{path}: cannot tell the split from the file name; give the split")
    return conv.local_split(tokens[0])


def _not_utf8(path: Path, lineno: int, raw: bytes, error: UnicodeDecodeError, offset: int) -> str:
    return (
        f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[error.start]:02x} at byte offset "
        f"{offset + error.start}): save the file as UTF-8"
    )


def check_utf8(path: Path) -> None:
    """Fail with the file, line and byte offset of the first byte that is not UTF-8 (the readers
    decode as UTF-8; a bare UnicodeDecodeError names neither the file nor the line). Read in
    binary, line by line: no UTF-8 character holds a newline byte, so each line decodes alone."""
    offset = 0
    try:
        with path.open("rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(_not_utf8(path, lineno, raw, exc, offset)) from None
                offset += len(raw)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None


def first_text_line(path: Path) -> str | None:
    """The first line of a text file that is not blank, or None; a file that cannot be read or
    is not UTF-8 fails with one line naming it."""
    offset = 0
    try:
        with path.open("rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(_not_utf8(path, lineno, raw, exc, offset)) from None
                if line.strip():
                    return line
                offset += len(raw)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    return None


def read_text(path: Path) -> str:
    """A file's text (UTF-8); one line naming the file and the place where it is not."""
    check_utf8(path)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None


def load_json(path: Path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except RecursionError:  # nesting deeper than the parser goes
        raise DataError(f"{path}: invalid JSON (nested too deeply)") from None


def _keyed(path: Path, key: str, row: Mapping[str, Any]) -> Any:
    try:
        return row[key]
    except KeyError:
        raise DataError(f"{path}: a record has no field '{key}'") from None


# --- normalized JSONL ----------------------------------------------------------------------------


def is_normalized_jsonl(path: Path) -> bool:
    """Whether the first record of a .jsonl file has the normalized fields."""
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    line = first_text_line(path)
    if line is None:
        return False
    try:
        first = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return False
    return isinstance(first, dict) and {"id", "question", "options", "answer"} <= set(first)


def normalized_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.jsonl") if is_normalized_jsonl(p))


def read_normalized(path: Path, options: ReadOptions = DEFAULT_OPTIONS) -> list[Group]:
    """`<dataset>/<split>.jsonl`, a task folder of them, or a folder of task folders.

    The dataset is the name of the folder holding the file, as in ../shared/benchmarks.
    """
    if path.is_file():
        split = options.split or path.stem
        return [Group(path.parent.name, split, _jsonl_records(path), str(path), "jsonl")]
    files = normalized_files(path) or [
        f for sub in sorted(p for p in path.iterdir() if p.is_dir()) for f in normalized_files(sub)
    ]
    return [Group(f.parent.name, f.stem, _jsonl_records(f), str(f), "jsonl") for f in files]


def _jsonl_records(path: Path) -> list[Record]:
    check_utf8(path)
    return list(read_jsonl(path))


def _json_rows(path: Path) -> list[dict[str, Any]]:
    check_utf8(path)
    return list(json_lines(path))


# --- MedQA, MedMCQA ------------------------------------------------------------------------------


def read_medqa_jsonl(path: Path, options: ReadOptions = DEFAULT_OPTIONS) -> list[Group]:
    """MedQA original jsonl: the id is the 0-based row number (`medqa-test-0000`).

    The release's file names tell the region: US (USMLE, English) -> `medqa`, Mainland China
    (MCMLE) -> `medqa_zh`.
    """
    split = split_from_name(path, options)
    where = f"{path.parent.name}/{path.name}".lower()
    if "mcmle" in where or "mainland" in where:
        dataset, prefix, language = "medqa_zh", "medqa-zh", "zh"
    elif "twmle" in where or "taiwan" in where:
        raise DataError(f"{path}: the Taiwan MedQA set is not supported")
    else:
        dataset, prefix, language = "medqa", "medqa", None
    rows = _json_rows(path)
    for row in rows:
        for key in ("question", "options", "answer_idx"):
            _keyed(path, key, row)
    records = conv.medqa_records(rows, split, prefix=prefix, language=language)
    return [Group(dataset, split, records, str(path), "medqa_jsonl")]


def read_medmcqa_json(path: Path, options: ReadOptions = DEFAULT_OPTIONS) -> list[Group]:
    """MedMCQA original release: JSON lines, options opa..opd, `cop` 1..4; dev.json = validation."""
    split = split_from_name(path, options)
    rows = _json_rows(path)
    if any(row.get("cop") == 0 for row in rows):
        # The release numbers options from 1; a 0 means a 0-based (Hub) export.
        raise DataError(
            f"{path}: 'cop' 0 found, but the original MedMCQA release numbers options from 1 "
            "(import a Hub export as parquet instead)"
        )
    for row in rows:
        for key in ("id", "question", "opa", "opb", "opc", "opd"):
            _keyed(path, key, row)
    records = conv.medmcqa_records(rows, cop_base=1)
    return [Group("medmcqa", split, records, str(path), "medmcqa_json")]


# --- PubMedQA ------------------------------------------------------------------------------------

PUBMEDQA_GROUND_TRUTH = "test_ground_truth.json"


def read_pubmedqa_json(path: Path, options: ReadOptions = DEFAULT_OPTIONS) -> list[Group]:
    """ori_pqal.json -> test (test_ground_truth.json order) and train (the rest, file order).

    The test PMIDs come from test_ground_truth.json beside the file, else from the list
    shipped with medboard (the same 500 PMIDs); a label that disagrees fails.
    """
    data = load_json(path)
    truth_path = path.with_name(PUBMEDQA_GROUND_TRUTH)
    truth: dict[str, str] | None = load_json(truth_path) if truth_path.is_file() else None
    if truth is not None and not isinstance(truth, dict):
        raise DataError(f"{truth_path}: expected a JSON object of PMID -> label")
    test_pmids = list(truth) if truth is not None else list(conv.pubmedqa_test_pmids())
    by_pmid: dict[str, Record] = {}
    for pmid, item in data.items():
        try:
            by_pmid[pmid] = conv.pubmedqa_record(
                pmid=pmid,
                question=item["QUESTION"],
                contexts=item["CONTEXTS"],
                labels=item.get("LABELS"),
                answer=item["final_decision"],
                long_answer=item.get("LONG_ANSWER"),
                year=item.get("YEAR"),
                meshes=item.get("MESHES"),
            )
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}: PMID {pmid} lacks field {exc}") from None
        if truth is not None and pmid in truth and truth[pmid] != item["final_decision"]:
            raise DataError(
                f"{path}: PMID {pmid} is '{item['final_decision']}' but {truth_path.name} "
                f"says '{truth[pmid]}'"
            )
    splits = conv.split_pubmedqa(by_pmid, test_pmids, str(path))
    return [
        Group("pubmedqa", s, records, str(path), "pubmedqa_json") for s, records in splits.items()
    ]


# --- MMLU ----------------------------------------------------------------------------------------

MMLU_HF_HEADER = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
_MMLU_NAME = re.compile(r"^(?P<subject>[a-z_]+?)_(?P<split>test|dev|val)\.csv$")
# In the MMLU release `dev` is the 5-shot split and `val` the validation split.
MMLU_SPLITS = {"test": "test", "dev": "dev", "val": "validation", "validation": "validation"}


def mmlu_csv_name(path: Path) -> tuple[str, str] | None:
    """(subject, split) from `<subject>_<split>.csv`."""
    match = _MMLU_NAME.match(path.name)
    if match is None:
        return None
    return match["subject"], MMLU_SPLITS[match["split"]]


def _csv_rows(path: Path) -> list[list[str]]:
    check_utf8(path)
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.reader(handle))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    except csv.Error as exc:
        raise DataError(f"{path}: invalid CSV ({exc})") from None


def _mmlu_file(path: Path, options: ReadOptions) -> Group | None:
    named = mmlu_csv_name(path)
    if named is None:
        raise DataError(f"{path}: an MMLU CSV must be named <subject>_<test|dev|val>.csv")
    subject, split = named
    if options.split:
        split = MMLU_SPLITS.get(options.split, options.split)
    if not options.keeps(subject):
        return None
    rows = _csv_rows(path)
    hf_export = bool(rows) and rows[0] == MMLU_HF_HEADER
    if hf_export:
        rows = rows[1:]
    records = []
    for lineno, row in enumerate(rows, start=2 if hf_export else 1):
        if len(row) != 6:
            raise DataError(f"{path}:{lineno}: expected 6 columns, got {len(row)}")
        # The hendrycks release writes the answer letter, its HF export the index 0-3.
        answers = ("0", "1", "2", "3") if hf_export else ("A", "B", "C", "D")
        if row[5] not in answers:
            raise DataError(f"{path}:{lineno}: answer {row[5]!r} is not one of {'/'.join(answers)}")
        answer = conv.LETTERS[answers.index(row[5])]
        records.append(conv.mmlu_record(subject, split, len(records), row[0], row[1:5], answer))
    fmt = "mmlu_hf_csv" if hf_export else "mmlu_csv"
    return Group(options.mmlu_dataset, split, records, str(path), fmt, merge_subjects=True)


def read_mmlu_csv(path: Path, options: ReadOptions = DEFAULT_OPTIONS) -> list[Group]:
    """MMLU CSVs: one file, or a folder (searched recursively) of `<subject>_<split>.csv`.

    Only the six medical subjects are kept unless options.all_subjects.
    """
    files = [path] if path.is_file() else sorted(path.rglob("*.csv"))
    groups = [_mmlu_file(f, options) for f in files if path.is_file() or mmlu_csv_name(f)]
    return [g for g in groups if g is not None]


# --- prompt_engine JSON (HPAI-BSC) ---------------------------------------------------------------

_PE_MMLU_ID = re.compile(r"^(?P<subject>[a-z_]+)_val_(?P<index>\d+)$")
_PE_MEDMCQA_ID = re.compile(r"^medmcqa_train_(?P<index>\d+)$")
# medmcqa/train.jsonl is the 500 items of the MedMCQA train sample with the lowest HF train
# index (see its SOURCE.md; the de-duplication against validation dropped none of them).
MEDMCQA_TRAIN_POOL = 500


def read_prompt_engine_json(path: Path, options: ReadOptions = DEFAULT_OPTIONS) -> list[Group]:
    """HPAI-BSC prompt_engine exports {uid: {question, options, correct_answer, ...}}.

    Which benchmark a file holds is told by its fields and ids: CareQA (category, exam_id;
    id = the uid), MMLU validation (`<subject>_val_N`), the MedMCQA train sample.
    """
    data = load_json(path)
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected a non-empty JSON object of questions")
    items = list(data.items())
    first = items[0][1]
    where = str(path)
    try:
        ids = [str(item.get("id", "")) for _, item in items]
        if {"category", "exam_id"} <= set(first):
            records = [
                conv.careqa_record(uid, item, item["options"], item["correct_answer"])
                for uid, item in items
            ]
            return [Group("careqa", options.split or "test", records, where, "prompt_engine_json")]
        if all(_PE_MEDMCQA_ID.match(i) for i in ids):
            ordered = sorted(data.values(), key=lambda item: int(item["id"].rsplit("_", 1)[1]))
            records = [
                {
                    "id": item["id"],
                    "question": item["question"],
                    "options": dict(item["options"]),
                    "answer": item["correct_answer"],
                }
                for item in ordered[:MEDMCQA_TRAIN_POOL]
            ]
            split = options.split or "train"
            return [Group("medmcqa", split, records, where, "prompt_engine_json")]
        parsed = [(_PE_MMLU_ID.match(i), item) for i, item in zip(ids, data.values(), strict=True)]
        if all(match is not None for match, _ in parsed):
            return _prompt_engine_mmlu(path, parsed, options)
    except KeyError as exc:
        raise DataError(f"{path}: a question lacks field {exc}") from None
    except (TypeError, AttributeError, ValueError):
        raise DataError(
            f"{path}: a question is not an object of the prompt_engine layout"
        ) from None
    raise DataError(f"{path}: a prompt_engine JSON file of an unknown benchmark")


def _prompt_engine_mmlu(
    path: Path, parsed: list[tuple[re.Match[str] | None, dict[str, Any]]], options: ReadOptions
) -> list[Group]:
    """`mmlu_<subject>_val.json`: ids `mmlu-<subject>-val-NNN`, N from the source id."""
    entries = sorted(
        ((m["subject"], int(m["index"]), item) for m, item in parsed if m is not None),
        key=lambda entry: entry[1],
    )
    subjects = {subject for subject, _, _ in entries}
    if len(subjects) != 1:
        raise DataError(f"{path}: an MMLU validation file with several subjects {sorted(subjects)}")
    subject = subjects.pop()
    if not options.keeps(subject):
        return []
    split = options.split or "validation"
    records = [
        conv.mmlu_record(
            subject,
            split,
            index,
            item["question"],
            [item["options"][key] for key in "ABCD"],
            item["correct_answer"],
        )
        for _, index, item in entries
    ]
    return [Group(options.mmlu_dataset, split, records, str(path), "prompt_engine_json", True)]


# --- HEAD-QA -------------------------------------------------------------------------------------


def read_headqa_json(path: Path, options: ReadOptions = DEFAULT_OPTIONS) -> list[Group]:
    """HEAD-QA v1.0: {"language", "exams": {exam: {name, category, year, data: [...]}}}.

    English goes to `headqa`; another language to `headqa_<lang>`, with a `language` field.
    """
    data = load_json(path)
    split = split_from_name(path, options)
    try:
        language = data.get("language", "en")
        rows = [
            {**question, "name": exam, "category": info.get("category"), "year": info.get("year")}
            for exam, info in data["exams"].items()
            for question in info["data"]
        ]
        if language == "en":
            dataset, records = "headqa", conv.headqa_records(rows)
        else:
            dataset, records = f"headqa_{language}", conv.headqa_records(rows, language=language)
    except KeyError as exc:
        raise DataError(f"{path}: an exam or question lacks field {exc}") from None
    except (TypeError, AttributeError, ValueError):
        raise DataError(
            f"{path}: not the HEAD-QA v1.0 layout (exams -> data -> questions)"
        ) from None
    return [Group(dataset, split, records, str(path), "headqa_json")]
