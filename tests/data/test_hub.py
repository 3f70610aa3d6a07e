"""pull_task: the Hub call, its offline failure, and local copies in the Hub schemas.

The Hub is never reached: small datasets in each Hub schema are built with
`datasets.Dataset.from_dict`, saved (save_to_disk and parquet) and pulled from there through the
same loading calls and converters.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from medboard.data.converters import CONVERTERS, pubmedqa_test_pmids
from medboard.data.hub import pull_task
from medboard.data.records import content_hash, read_jsonl
from medboard.data.store import DataStore
from medboard.errors import DataError, HubUnreachableError
from medboard.tasks import REGISTRY
from medboard.tasks.base import Task

from .conftest import NORMALIZED

datasets = pytest.importorskip("datasets")


def save_both(rows: dict[str, list[Any]], folder: Path, split: str, features: Any = None) -> None:
    """The rows as a save_to_disk folder (folder/disk) and a parquet copy (folder/parquet)."""
    data = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict({split: data}).save_to_disk(str(folder / "disk"))
    (folder / "parquet").mkdir(parents=True)
    data.to_parquet(str(folder / "parquet" / f"{split}-00000-of-00001.parquet"))


def pull_both(task: Task, folder: Path, tmp_path: Path) -> tuple[DataStore, DataStore]:
    stores = (DataStore(root=tmp_path / "s1"), DataStore(root=tmp_path / "s2"))
    pull_task(task, stores[0], source=folder / "disk", cache_dir=tmp_path / "cache")
    pull_task(task, stores[1], source=folder / "parquet", cache_dir=tmp_path / "cache")
    return stores


def records_of(path: Path) -> list[dict]:
    return list(read_jsonl(path))


def test_every_hub_source_names_a_known_converter() -> None:
    # The English suites come from the Hub too; the other languages from their release files
    # (medboard data import), as ../shared/benchmarks has them.
    pulled = [t for t in REGISTRY.tasks() if t.hub is not None]
    assert {t.name for t in pulled} >= set(REGISTRY.suite("extended_medical"))
    for task in pulled:
        assert task.hub is not None and task.hub.converter in CONVERTERS, task.name


def test_medqa_pull_matches_the_release_import(src: Path, tmp_path: Path) -> None:
    want = records_of(NORMALIZED / "medqa" / "test.jsonl")
    rows = {
        "question": [r["question"] for r in want],
        "answer": [r["answer_text"] for r in want],
        "options": [r["options"] for r in want],
        "meta_info": [r["subject"] for r in want],
        "answer_idx": [r["answer"] for r in want],
    }
    save_both(rows, src, "test")
    for store in pull_both(REGISTRY.task("medqa_4options"), src, tmp_path):
        assert store.load("medqa", "test") == want
        info = store.info("medqa", "test")
        assert info.format == "hub_copy/medqa_hub" and str(src) in info.source


def test_medmcqa_pull_uses_zero_based_cop(src: Path, tmp_path: Path) -> None:
    want = records_of(NORMALIZED / "medmcqa" / "validation.jsonl")
    rows = {
        "id": [r["id"] for r in want],
        "question": [r["question"] for r in want],
        **{f"op{k}": [r["options"][k.upper()] for r in want] for k in "abcd"},
        "cop": ["ABCD".index(r["answer"]) for r in want],
        "choice_type": [r["choice_type"] for r in want],
        "exp": [r["explanation"] for r in want],
        "subject_name": [r["subject"] for r in want],
        "topic_name": [r["topic"] for r in want],
    }
    save_both(rows, src, "validation")
    for store in pull_both(REGISTRY.task("medmcqa"), src, tmp_path):
        assert store.load("medmcqa", "validation") == want


def test_careqa_pull_uses_one_based_cop(src: Path, tmp_path: Path) -> None:
    want = records_of(NORMALIZED / "careqa" / "test.jsonl")
    rows = {
        "unique_id": [r["id"] for r in want],
        "question": [r["question"] for r in want],
        **{f"op{i + 1}": [r["options"]["ABCD"[i]] for r in want] for i in range(4)},
        "cop": ["ABCD".index(r["answer"]) + 1 for r in want],
        "category": [r["subject"] for r in want],
        "year": [r["year"] for r in want],
        "exam_id": [r["exam_id"] for r in want],
    }
    save_both(rows, src, "test")
    for store in pull_both(REGISTRY.task("careqa_en"), src, tmp_path):
        assert store.load("careqa", "test") == want


def test_headqa_pull_builds_exam_qid_ids(src: Path, tmp_path: Path) -> None:
    want = records_of(NORMALIZED / "headqa" / "test.jsonl")
    answer = {"aid": datasets.Value("int32"), "atext": datasets.Value("string")}
    features = datasets.Features(
        {
            "name": datasets.Value("string"),
            "year": datasets.Value("string"),
            "category": datasets.Value("string"),
            "qid": datasets.Value("int32"),
            "qtext": datasets.Value("string"),
            "ra": datasets.Value("int32"),
            "image": datasets.Value("string"),
            "answers": [answer],
        }
    )
    rows = {
        "name": [r["exam"] for r in want],
        "year": [r["year"] for r in want],
        "category": [r["subject"] for r in want],
        "qid": [int(r["qid"]) for r in want],
        "qtext": [r["question"] for r in want],
        "ra": ["ABCD".index(r["answer"]) + 1 for r in want],
        "image": [r["image"] for r in want],
        # Reversed, as a reminder that the options are sorted by answer id.
        "answers": [
            [{"aid": i + 1, "atext": t} for i, t in enumerate(r["options"].values())][::-1]
            for r in want
        ],
    }
    save_both(rows, src, "test", features)
    for store in pull_both(REGISTRY.task("headqa_en"), src, tmp_path):
        assert store.load("headqa", "test") == want


def pubmedqa_rows(pmids: list[str]) -> dict[str, list[Any]]:
    return {
        "pubid": [int(p) for p in pmids],
        "question": [f"Question {p}?" for p in pmids],
        "context": [
            {"contexts": [f"Part one of {p}.", "Part two."], "labels": ["A", "B"], "meshes": ["M"]}
            for p in pmids
        ],
        "long_answer": ["Conclusion." for _ in pmids],
        "final_decision": [("yes", "no", "maybe")[int(p) % 3] for p in pmids],
    }


def test_pubmedqa_pull_selects_the_500_test_pmids_in_order(src: Path, tmp_path: Path) -> None:
    test = list(pubmedqa_test_pmids())
    others = [str(n) for n in range(1, 501)]
    # The labeled config is one split of 1000, in its own order; test PMIDs interleaved.
    mixed = [p for pair in zip(others, sorted(test), strict=True) for p in pair]
    save_both(pubmedqa_rows(mixed), src, "train")
    task = REGISTRY.task("pubmedqa")
    for store in pull_both(task, src, tmp_path):
        stored = store.load("pubmedqa", "test")
        assert [r["id"] for r in stored] == test
        assert stored[0]["context"] == f"Part one of {test[0]}.\nPart two."
        assert stored[0]["split"] == "test" and "year" not in stored[0]
        assert [r["id"] for r in store.load("pubmedqa", "train")] == others


def test_pubmedqa_pull_without_all_test_pmids_fails(src: Path, tmp_path: Path) -> None:
    save_both(pubmedqa_rows(list(pubmedqa_test_pmids())[:10]), src, "train")
    store = DataStore(root=tmp_path / "store")
    with pytest.raises(DataError, match="490 of the 500 PubMedQA test PMIDs are missing"):
        pull_task(REGISTRY.task("pubmedqa"), store, source=src / "disk", cache_dir=tmp_path / "c")
    assert not store.has("pubmedqa", "test")


def mmlu_rows(subject: str, n: int) -> dict[str, list[Any]]:
    return {
        "question": [f"{subject} question {i}" for i in range(n)],
        "subject": [subject] * n,
        "choices": [["w", "x", "y", "z"]] * n,
        "answer": [i % 4 for i in range(n)],
    }


def test_mmlu_pull_selects_the_task_subject(src: Path, tmp_path: Path) -> None:
    # A Hub copy laid out as cais/mmlu: one folder per config (= subject).
    for subject, n in (("anatomy", 3), ("college_medicine", 2)):
        folder = src / subject
        folder.mkdir()
        datasets.Dataset.from_dict(mmlu_rows(subject, n)).to_parquet(
            str(folder / "test-00000-of-00001.parquet")
        )
    store = DataStore(root=tmp_path / "store")
    cache = tmp_path / "cache"
    info = pull_task(REGISTRY.task("mmlu_college_medicine"), store, source=src, cache_dir=cache)
    assert info.count == 2
    info = pull_task(REGISTRY.task("mmlu_anatomy"), store, source=src, cache_dir=cache)
    records = store.load("mmlu_medical", "test")
    assert [r["id"] for r in records] == [
        "mmlu-anatomy-test-000",
        "mmlu-anatomy-test-001",
        "mmlu-anatomy-test-002",
        "mmlu-college_medicine-test-000",
        "mmlu-college_medicine-test-001",
    ]
    assert info.count == 5
    data = store.task_data(REGISTRY.task("mmlu_anatomy"), allow_mismatch=True)
    assert len(data.records) == 3


def test_mmlu_pull_from_a_mixed_source_keeps_one_subject(src: Path, tmp_path: Path) -> None:
    rows = mmlu_rows("anatomy", 2)
    for key, values in mmlu_rows("virology", 2).items():
        rows[key] = rows[key] + values
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(src / "all"))
    store = DataStore(root=tmp_path / "store")
    pull_task(REGISTRY.task("mmlu_anatomy"), store, source=src / "all")
    assert {r["subject"] for r in store.load("mmlu_medical", "test")} == {"anatomy"}


def test_hub_pull_calls_load_dataset_pinned_and_without_remote_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[tuple, dict]] = []

    def fake_load_dataset(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return datasets.Dataset.from_dict(mmlu_rows("anatomy", 2))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    store = DataStore(root=tmp_path)
    task = REGISTRY.task("mmlu_anatomy")
    info = pull_task(task, store)
    ((args, kwargs),) = calls
    assert args == ("cais/mmlu", "anatomy")
    assert kwargs["split"] == "test" and kwargs["revision"] == task.hub.revision
    assert "trust_remote_code" not in kwargs
    assert info.source.startswith(f"hf://datasets/cais/mmlu@{task.hub.revision}")
    assert info.format == "hub/mmlu_hub"
    pull_task(task, store, revision="0123abcd")
    assert calls[-1][1]["revision"] == "0123abcd"


def test_offline_hub_raises_hub_unreachable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The real load_dataset, with the Hub client switched to offline mode.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    store = DataStore(root=tmp_path)
    with pytest.raises(HubUnreachableError) as excinfo:
        pull_task(REGISTRY.task("medqa_4options"), store, cache_dir=tmp_path / "cache")
    message = str(excinfo.value)
    assert "GBaker/MedQA-USMLE-4-options" in message
    assert "medboard data import PATH" in message
    assert "\n" not in message
    assert not store.has("medqa", "test")


def test_network_errors_in_the_cause_chain_mean_unreachable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    class ConnectTimeout(Exception):  # the name requests and httpx use
        pass

    def failing(*args: Any, **kwargs: Any) -> Any:
        try:
            raise ConnectTimeout("timed out")
        except ConnectTimeout as exc:
            raise RuntimeError("something went wrong") from exc

    monkeypatch.setattr(datasets, "load_dataset", failing)
    with pytest.raises(HubUnreachableError, match="openlifescienceai/medmcqa"):
        pull_task(REGISTRY.task("medmcqa"), DataStore(root=tmp_path))


def test_other_hub_failures_are_data_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def missing(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError("Dataset 'HPAI-BSC/CareQA' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(DataError, match="cannot load HPAI-BSC/CareQA \\(CareQA_en\\) at revision"):
        pull_task(REGISTRY.task("careqa_en"), DataStore(root=tmp_path))


def test_source_errors(src: Path, tmp_path: Path) -> None:
    store = DataStore(root=tmp_path)
    task = REGISTRY.task("medmcqa")
    with pytest.raises(DataError, match="no such file or folder"):
        pull_task(task, store, source=src / "missing")
    with pytest.raises(DataError, match="revision applies to the Hub"):
        pull_task(task, store, revision="abc", source=src)
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(mmlu_rows("anatomy", 1))}
    ).save_to_disk(str(src / "saved"))
    with pytest.raises(DataError, match="no split 'validation' \\(has train\\)"):
        pull_task(task, store, source=src / "saved")
    no_hub = dataclasses.replace(task, hub=None)
    with pytest.raises(DataError, match="has no Hub source"):
        pull_task(no_hub, store)


def test_medmcqa_hub_test_split_without_answers_is_refused(src: Path, tmp_path: Path) -> None:
    rows = {
        "id": ["t1"],
        "question": ["q"],
        **{f"op{k}": [k] for k in "abcd"},
        "cop": [-1],
        "choice_type": ["single"],
        "exp": [None],
        "subject_name": ["Anatomy"],
        "topic_name": [None],
    }
    save_both(rows, src, "validation")
    with pytest.raises(DataError, match="answer index -1"):
        pull_task(REGISTRY.task("medmcqa"), DataStore(root=tmp_path), source=src / "disk")


def test_pulled_and_imported_copies_hash_the_same(src: Path, tmp_path: Path) -> None:
    # The Hub pull and the file import share their converters: same content hash.
    want = records_of(NORMALIZED / "medqa" / "test.jsonl")
    rows = [
        {
            "question": r["question"],
            "answer": r["answer_text"],
            "options": r["options"],
            "meta_info": r["subject"],
            "answer_idx": r["answer"],
        }
        for r in want
    ]
    (src / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    info = pull_task(
        REGISTRY.task("medqa_4options"), DataStore(root=tmp_path), source=src / "test.jsonl"
    )
    assert info.content_hash == content_hash(want)
