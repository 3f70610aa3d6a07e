"""Answers worked out once per machine: stored under a digest of what they depend on."""

import json
from pathlib import Path

import pytest

from medboard.backends import verdicts
from medboard.backends.verdicts import FILE_NAME, backend_code, remembered, software


def counting(answer: bool) -> tuple[list[int], object]:
    calls: list[int] = []

    def work() -> bool:
        calls.append(1)
        return answer

    return calls, work


def test_an_answer_is_worked_out_once(medboard_home: Path) -> None:
    calls, work = counting(True)
    assert remembered("q", {"a": 1}, work) is True
    assert remembered("q", {"a": 1}, work) is True
    assert len(calls) == 1
    stored = json.loads((medboard_home / FILE_NAME).read_text())
    assert list(stored.values()) == [True]


def test_every_home_on_the_machine_shares_the_answers(
    medboard_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh home (a benchmark's, a worker's) does not time the machine again."""
    calls, work = counting(True)
    remembered("q", {"a": 1}, work)
    monkeypatch.setenv("MEDBOARD_HOME", str(tmp_path / "another-home"))
    assert remembered("q", {"a": 1}, work) is True
    assert len(calls) == 1
    assert not (tmp_path / "another-home").exists()


def test_a_no_is_remembered_too(medboard_home: Path) -> None:
    calls, work = counting(False)
    assert remembered("q", {"a": 1}, work) is False
    assert remembered("q", {"a": 1}, work) is False
    assert len(calls) == 1


def test_other_dependencies_or_questions_ask_again(medboard_home: Path) -> None:
    calls, work = counting(True)
    remembered("q", {"a": 1}, work)
    remembered("q", {"a": 2}, work)
    remembered("other", {"a": 1}, work)
    assert len(calls) == 3
    assert len(json.loads((medboard_home / FILE_NAME).read_text())) == 3


def test_a_damaged_store_is_worked_out_again_and_rewritten(medboard_home: Path) -> None:
    medboard_home.mkdir(parents=True)
    (medboard_home / FILE_NAME).write_text("{not json")
    calls, work = counting(True)
    assert remembered("q", {"a": 1}, work) is True
    assert len(calls) == 1
    assert list(json.loads((medboard_home / FILE_NAME).read_text()).values()) == [True]


def test_a_failing_check_stores_nothing(medboard_home: Path) -> None:
    def work() -> bool:
        raise RuntimeError("compiler missing")

    with pytest.raises(RuntimeError):
        remembered("q", {"a": 1}, work)
    assert not (medboard_home / FILE_NAME).exists()


def test_backend_code_follows_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in (("a.py", "x = 1\n"), ("k.c", "int f;\n"), ("notes.md", "n\n")):
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(verdicts, "__file__", str(tmp_path / "verdicts.py"))
    backend_code.cache_clear()
    try:
        first = backend_code()
        (tmp_path / "notes.md").write_text("changed\n")  # not code
        backend_code.cache_clear()
        assert backend_code() == first
        (tmp_path / "k.c").write_text("int g;\n")
        backend_code.cache_clear()
        assert backend_code() != first
    finally:
        backend_code.cache_clear()


def test_software_names_the_versions() -> None:
    import torch

    found = software()
    assert found["torch"] == torch.__version__
    assert set(found) == {"python", "torch", "transformers", "medboard_backends", "machine"}
