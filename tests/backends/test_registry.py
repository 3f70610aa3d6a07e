"""The backend registry: names, collisions, and what the queue asks of a backend."""

import re
from pathlib import Path

import pytest

from medboard.backends import registry
from medboard.errors import MedboardError, ModelError


@pytest.fixture()
def entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a package's entry points (group medboard.backends) onto the path."""

    def install(lines: str, name: str = "other") -> None:
        dist = tmp_path / f"{name}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(f"[medboard.backends]\n{lines}\n")
        registry.registrations.cache_clear()
        registry._LOADED.clear()

    monkeypatch.syspath_prepend(str(tmp_path))
    yield install
    registry.registrations.cache_clear()
    registry._LOADED.clear()


def test_builtin_backends() -> None:
    assert {"fake", "hf"} <= set(registry.known())
    assert registry.registrations()["hf"].origin == "medboard"
    with pytest.raises(ModelError, match=r"unknown backend 'nope' \(known: .*fake, hf"):
        registry.resolve("nope:model")


def test_a_name_taken_twice_is_refused(entry_points) -> None:
    entry_points("hf = other_package:PROVIDER")
    with pytest.raises(MedboardError, match="two backends are named 'hf': medboard's and other's"):
        registry.known()


def test_a_backend_that_does_not_load_says_so(entry_points) -> None:
    entry_points("ghost = no_such_module:PROVIDER")
    assert "ghost" in registry.known()
    with pytest.raises(ModelError, match="backend ghost \\(other\\) does not load"):
        registry.resolve("ghost:x")


def test_fake_submissions_are_validated_without_a_model() -> None:
    info = registry.validate(registry.resolve("fake:bias=B"))
    assert info.revision == "bias=B" and "loglikelihood" in info.capabilities
    with pytest.raises(ModelError, match="unknown option 'colour'"):
        registry.validate(registry.resolve("fake:colour=red"))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("fake:delay=abc", "delay='abc': delay must be a number of seconds from 0 to 60"),
        ("fake:delay=-1", "delay='-1': delay must be a number of seconds from 0 to 60"),
        ("fake:delay=nan", "delay='nan': delay must be a number of seconds from 0 to 60"),
        ("fake:delay=1e9", "delay='1e9': delay must be a number of seconds from 0 to 60"),
        ("fake:batch=0", "batch='0': batch must be a whole number from 1 to 4096"),
        ("fake:batch=x", "batch='x': batch must be a whole number from 1 to 4096"),
    ],
)
def test_a_bad_fake_option_is_one_line(model: str, message: str) -> None:
    """They were tracebacks in `medboard eval`, HTTP 500 from `POST /api/submit`, or queued
    jobs that failed in the worker (batch=0, delay=-1); a public one could hold a worker for
    ever (delay=1e9)."""
    with pytest.raises(ModelError, match=f"^fake model option {re.escape(message)}$"):
        registry.validate(registry.resolve(model))
