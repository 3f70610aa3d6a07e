"""Input that cannot be imported is one line naming the file (and the line and byte where the
text is not UTF-8), and leaves the store as it was: every release format, a folder, odd paths."""

import json
import shutil
from pathlib import Path

import pytest

from medboard.data.formats import check_utf8, load_json
from medboard.data.importer import import_path
from medboard.data.store import DataStore
from medboard.errors import DataError

from .conftest import FIXTURES, NORMALIZED


def spoil(path: Path, line: int) -> int:
    """A byte that is not UTF-8 (0xff) put at the start of `line` (1-based): its offset."""
    data = path.read_bytes()
    starts = [0] + [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]
    offset = starts[line - 1]
    path.write_bytes(data[:offset] + b"\xff" + data[offset:])
    return offset


def store_files(store: DataStore) -> dict[str, bytes]:
    return {str(p.relative_to(store.root)): p.read_bytes() for p in store.root.rglob("*.*")}


@pytest.mark.parametrize(
    ("relative", "line"),
    [
        ("normalized/medqa/test.jsonl", 3),
        ("normalized/medqa/test.jsonl", 1),
        ("medqa/phrases_no_exclude_test.jsonl", 4),
        ("medmcqa/dev.json", 2),
        ("pubmedqa/ori_pqal.json", 30),
        ("mmlu/test/anatomy_test.csv", 2),
        ("mmlu/val/mmlu_anatomy_val.json", 5),
        ("careqa/careqa_test.json", 18),
        ("headqa/test_HEAD_EN.json", 1),
    ],
)
def test_a_byte_that_is_not_utf8_is_one_line_and_nothing_is_stored(
    relative: str, line: int, src: Path, store: DataStore
) -> None:
    import_path(NORMALIZED, store)  # what the store held before
    before = store_files(store)
    source = FIXTURES / relative
    target = src / relative
    target.parent.mkdir(parents=True)
    shutil.copy(source, target)
    if relative.startswith("pubmedqa"):
        shutil.copy(source.with_name("test_ground_truth.json"), target.parent)
    offset = spoil(target, line)
    with pytest.raises(DataError) as raised:
        import_path(target, store)
    message = str(raised.value)
    assert message == (
        f"{target}:{line}: not UTF-8 text (byte 0xff at byte offset {offset}): save the file "
        "as UTF-8"
    )
    assert store_files(store) == before


def test_a_folder_with_one_spoiled_file_stores_nothing(src: Path, store: DataStore) -> None:
    shutil.copytree(FIXTURES / "mmlu", src / "mmlu")
    spoil(src / "mmlu" / "test" / "college_medicine_test.csv", 1)
    with pytest.raises(DataError, match=r"college_medicine_test.csv:1: not UTF-8"):
        import_path(src / "mmlu", store)
    assert not list(store.root.rglob("*.jsonl"))


def test_a_normalized_folder_with_one_spoiled_file_stores_nothing(
    src: Path, store: DataStore
) -> None:
    shutil.copytree(NORMALIZED, src / "normalized")
    spoil(src / "normalized" / "pubmedqa" / "test.jsonl", 2)
    with pytest.raises(DataError, match=r"pubmedqa/test.jsonl:2: not UTF-8"):
        import_path(src / "normalized", store)
    assert not list(store.root.rglob("*.jsonl"))


def test_check_utf8_counts_bytes_not_characters(src: Path) -> None:
    path = src / "x.jsonl"
    path.write_bytes("é\n".encode() + b"ab\xc3(\n")  # a broken two-byte sequence on line 2
    with pytest.raises(
        DataError, match=r"x.jsonl:2: not UTF-8 text \(byte 0xc3 at byte offset 5\)"
    ):
        check_utf8(path)


@pytest.mark.parametrize(
    "name", ["m" * 256, "é" * 128 + ".jsonl", "a\x00b.jsonl", "~no-such-user/x.jsonl"]
)
def test_a_path_the_system_cannot_look_up_is_no_such_file(name: str, store: DataStore) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        import_path(Path("/tmp") / name if "~" not in name else Path(name), store)


def test_a_headqa_file_of_another_layout(src: Path, store: DataStore) -> None:
    path = src / "test_HEAD_EN.json"
    path.write_text(json.dumps({"exams": {"x": {"name": "x"}}}))  # no "data"
    with pytest.raises(DataError, match="an exam or question lacks field 'data'"):
        import_path(path, store)
    path.write_text(json.dumps({"exams": {"x": {"data": ["not a question"]}}}))
    with pytest.raises(DataError, match="not the HEAD-QA v1.0 layout"):
        import_path(path, store)
    assert not list(store.root.rglob("*.jsonl"))


def test_a_pubmedqa_ground_truth_that_is_not_an_object(src: Path, store: DataStore) -> None:
    shutil.copy(FIXTURES / "pubmedqa" / "ori_pqal.json", src)
    (src / "test_ground_truth.json").write_text('["12345"]')
    with pytest.raises(DataError, match="test_ground_truth.json: expected a JSON object"):
        import_path(src / "ori_pqal.json", store)


def test_deeply_nested_json_is_one_line(src: Path) -> None:
    path = src / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="deep.json"):
        load_json(path)


def test_a_prompt_engine_file_with_a_question_that_is_not_an_object(
    src: Path, store: DataStore
) -> None:
    data = json.loads((FIXTURES / "careqa" / "careqa_test.json").read_text())
    data["broken"] = "not a question"
    path = src / "careqa_test.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="not an object of the prompt_engine layout"):
        import_path(path, store)
