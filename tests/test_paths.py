"""The medboard home and its small JSON files."""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from medboard.paths import (
    atomic_write_bytes,
    home,
    machine_cache,
    read_json_object,
    write_json_object,
)


def test_home_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDBOARD_HOME", str(tmp_path / "h"))
    assert home() == tmp_path / "h"


def test_the_machine_cache_is_one_per_user_whatever_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDBOARD_MACHINE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for name in ("h1", "h2"):
        monkeypatch.setenv("MEDBOARD_HOME", str(tmp_path / name))
        assert machine_cache() == tmp_path / "user" / ".cache" / "medboard-machine"
    monkeypatch.setenv("MEDBOARD_MACHINE_CACHE", str(tmp_path / "m"))
    assert machine_cache() == tmp_path / "m"


def test_a_json_object_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "x.json"
    write_json_object(path, {"a": [1, 2], "b": True})
    assert read_json_object(path) == {"a": [1, 2], "b": True}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_writers_in_threads_leave_one_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: write_json_object(path, {"writer": i}), range(200)))
    assert read_json_object(path)["writer"] in range(200)
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_a_write_that_fails_keeps_the_file_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.bin"
    atomic_write_bytes(path, b"before")

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"after")
    monkeypatch.undo()
    assert path.read_bytes() == b"before"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


@pytest.mark.parametrize("text", [None, "", "{broken", "[1, 2]", '"text"'])
def test_missing_damaged_or_other_json_reads_as_empty(tmp_path: Path, text: str | None) -> None:
    path = tmp_path / "x.json"
    if text is not None:
        path.write_text(text)
    assert read_json_object(path) == {}
