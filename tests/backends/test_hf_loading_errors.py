"""Model strings the file system cannot look up (a component over 255 bytes, a NUL byte, an
unknown ~user) are one line naming the problem at every entry point, never an OSError: here the
backend's own functions; the CLI and the web routes in tests/test_cli.py and tests/web."""

from pathlib import Path

import pytest

from medboard.backends import registry
from medboard.backends.hf_loading import check_adapter, is_hub_id, resolve_source
from medboard.backends.hf_validate import validate_model
from medboard.backends.spec import local_kind, overlong_component, split_prefix
from medboard.errors import ModelError

LONG = "m" * 256  # one byte over NAME_MAX: stat() raises ENAMETOOLONG
UNLOOKABLE = [
    f"/tmp/{LONG}",
    f"org/{LONG}",  # looks like a Hub id, but no Hub id is that long
    f"{LONG}.gguf",
    f"/tmp/{'é' * 128}",  # 128 characters, 256 bytes in UTF-8
    "/tmp/a\x00b",
    "~no-such-user-here/model",
    f"hf:/tmp/{LONG}",
]


@pytest.mark.parametrize("spec", UNLOOKABLE)
def test_a_name_the_system_cannot_look_up_names_nothing(spec: str) -> None:
    assert local_kind(spec) is None
    assert local_kind(Path(spec) / "config.json") is None


@pytest.mark.parametrize("spec", UNLOOKABLE)
def test_resolving_it_is_one_line(spec: str) -> None:
    model = registry.resolve(spec).model
    with pytest.raises(ModelError) as raised:
        resolve_source(model)
    message = str(raised.value)
    assert "\n" not in message
    assert "does not exist" in message
    if overlong_component(model):
        assert "longer than 255 bytes" in message


@pytest.mark.parametrize("spec", UNLOOKABLE)
def test_validating_it_as_a_submission_is_one_line(spec: str) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        validate_model(registry.resolve(spec).model)


def test_an_adapter_the_system_cannot_look_up(tiny_model: Path) -> None:
    for adapter in (f"/tmp/{LONG}", "/tmp/a\x00b"):
        with pytest.raises(ModelError, match="not a PEFT adapter directory"):
            check_adapter(adapter)
        with pytest.raises(ModelError, match="not a PEFT adapter directory"):
            validate_model(str(tiny_model), adapter=adapter)


def test_a_long_name_is_not_a_backend_prefix() -> None:
    # split_prefix asks whether the text is a local path before it reads a prefix
    assert split_prefix(f"fake:{LONG}") == ("fake", LONG)
    assert split_prefix(f"/tmp/{LONG}") == (None, f"/tmp/{LONG}")


def test_hub_ids() -> None:
    assert is_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not is_hub_id("org/" + "m" * 93)  # 97 characters: the Hub takes at most 96
    assert not is_hub_id("org/model\n")
    assert not is_hub_id("org/modèle")


def test_an_unreadable_weight_file_is_one_line(
    tmp_path: Path, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the server may not read (root reads every file, so the refusal is simulated)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    real_open = Path.open

    def refusing_open(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "model.safetensors":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", refusing_open)
    with pytest.raises(ModelError, match="cannot read .*model.safetensors: Permission denied"):
        validate_model(str(folder))
    with pytest.raises(ModelError, match="cannot read .*model.safetensors: Permission denied"):
        registry.create(registry.resolve(str(folder)))
