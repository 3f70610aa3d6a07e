"""Engines behind one interface, named by model specs (spec.py) and found by name in the
registry (registry.py), created lazily so that a missing extra says what to install.

`fake[:options]` is the deterministic test model; a model without a backend prefix is a
transformers causal LM (a local directory, a GGUF file or a Hub id).
"""

from typing import Any

from medboard.backends import registry
from medboard.backends.base import (
    Backend,
    ChoiceRequest,
    ChoiceResult,
    GenerateRequest,
    GenerateResult,
    ModelInfo,
)
from medboard.backends.spec import ModelSpec, parse_assignments


def create_backend(
    model: str,
    dtype: str | None = None,
    device: str | None = None,
    adapter: str | None = None,
    revision: str | None = None,
    batch_tokens: int | None = None,
    matmul: str | None = None,
    compile_mode: str | None = None,
    attention: str | None = None,
    activation: str | None = None,
    **args: Any,
) -> Backend:
    """The backend for a model string and backend arguments (None: the backend's default), as
    the registry resolves and creates it; the keywords are the transformers backend's."""
    given = {
        "dtype": dtype,
        "device": device,
        "adapter": adapter,
        "revision": revision,
        "batch_tokens": batch_tokens,
        "bf16_matmul": matmul,
        "compile": compile_mode,
        "attention": attention,
        "activation": activation,
        **args,
    }
    spec = registry.resolve(model, {k: v for k, v in given.items() if v is not None})
    return registry.create(spec)


__all__ = [
    "Backend",
    "ChoiceRequest",
    "ChoiceResult",
    "GenerateRequest",
    "GenerateResult",
    "ModelInfo",
    "ModelSpec",
    "create_backend",
    "parse_assignments",
    "registry",
]
