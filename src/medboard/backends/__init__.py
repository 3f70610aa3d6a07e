"""Engines behind one interface, created lazily so a missing extra says what to install.

Model specs: `fake[:options]` is the deterministic test model; anything else is a transformers
causal LM (a local directory, a GGUF file, or a Hub id).
"""

from medboard.backends.base import (
    Backend,
    ChoiceRequest,
    ChoiceResult,
    GenerateRequest,
    GenerateResult,
)
from medboard.errors import MissingExtraError
from medboard.heap import long_lived


def create_backend(
    model: str,
    dtype: str = "float32",
    device: str = "cpu",
    adapter: str | None = None,
    revision: str | None = None,
    batch_tokens: int | None = None,
    matmul: str = "auto",
    compile_mode: str = "auto",
    attention: str = "auto",
    activation: str = "auto",
) -> Backend:
    if model == "fake" or model.startswith("fake:"):
        from medboard.backends.fake import FakeBackend

        return FakeBackend(model.partition(":")[2])
    with long_lived():  # torch and transformers: imported once, kept to the end
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError(exc.name or "transformers", "hf") from None
        from medboard.backends.hf import HFBackend

    return HFBackend(
        model,
        dtype=dtype,
        device=device,
        adapter=adapter,
        revision=revision,
        batch_tokens=batch_tokens,
        matmul=matmul,
        compile_mode=compile_mode,
        attention=attention,
        activation=activation,
    )


__all__ = [
    "Backend",
    "ChoiceRequest",
    "ChoiceResult",
    "GenerateRequest",
    "GenerateResult",
    "create_backend",
]
