from collections.abc import Callable
from pathlib import Path

import pytest

from medboard.backends import activation, attention
from medboard.backends.native import kernel_mode
from medboard.backends.probe import cpu_flags
from medboard.errors import ModelError

KERNELS = [
    pytest.param(
        attention.attention_mode, attention.library, "amx", "attention_amx.c", "amx_bf16",
        id="attention",
    ),
    pytest.param(
        attention.attention_mode, attention.library, "avx512", "attention_avx512.c", "avx512_bf16",
        id="attention-avx512",
    ),
    pytest.param(
        activation.activation_mode, activation.library, "native", "gated_act.c", "avx512_bf16",
        id="activation",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("mode", "library", "mine", "source", "flag"), KERNELS)
def test_a_failed_build_falls_back_to_torch_or_is_an_error_when_asked_for(
    mode: Callable[..., str | None],
    library: Callable[[], object],
    mine: str,
    source: str,
    flag: str,
    medboard_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    if flag not in (cpu_flags() or ()):
        pytest.skip(f"the kernel needs {flag}")
    library.cache_clear()  # type: ignore[attr-defined]
    monkeypatch.setenv("CC", "no-such-compiler")
    try:
        with pytest.raises(ModelError, match="no CC=no-such-compiler"):
            mode("bfloat16", "cpu", mine)
        monkeypatch.setenv("CC", "/bin/false")
        assert mode("bfloat16", "cpu") is None
        assert "instead of medboard's kernel" in capsys.readouterr().err
        with pytest.raises(ModelError, match=f"building {source} failed"):
            mode("bfloat16", "cpu", mine)
        kernels = medboard_home / "kernels"
        assert not kernels.exists() or not any(kernels.glob("*.so"))  # nothing half-written
    finally:
        library.cache_clear()  # type: ignore[attr-defined]


def test_kernel_mode_resolution(capsys: pytest.CaptureFixture) -> None:
    choices = ("auto", "theirs", "mine")

    def failing() -> None:
        raise ModelError("no compiler")

    def resolve(requested: str, usable: bool, load: Callable[[], object] = lambda: None) -> object:
        return kernel_mode("thing", requested, choices, usable, "a CPU with X", load, "tag-1")

    assert resolve("auto", True) == "tag-1"
    assert resolve("mine", True) == "tag-1"
    assert resolve("auto", False) is None
    assert resolve("theirs", True) is None
    assert resolve("theirs", True, failing) is None  # not even built
    with pytest.raises(ModelError, match="unknown thing 'fast' \\(choose from auto, theirs"):
        resolve("fast", True)
    with pytest.raises(ModelError, match="--thing mine needs a CPU with X"):
        resolve("mine", False)
    assert resolve("auto", True, failing) is None
    assert "torch's thing instead of medboard's kernel: no compiler" in capsys.readouterr().err
    with pytest.raises(ModelError, match="no compiler"):
        resolve("mine", True, failing)
