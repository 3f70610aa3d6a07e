"""The versioned result of one run: one task, one model, everything that decides its numbers."""

import hashlib
import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, field_serializer, field_validator

SCHEMA_VERSION = 1


class RunSpec(BaseModel):
    """What decides a run's numbers; its hash is the run key."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    task: str
    task_version: str
    protocol: str
    dataset: str
    split: str
    data_hash: str
    model: str
    model_revision: str
    dtype: str
    matmul: str | None = None  # how bfloat16 products run (medboard.backends.kernels)
    compiled: str | None = None  # compiled layers' arithmetic (kernels.COMPILED_ARITHMETIC)
    attention: str | None = None  # the attention kernel's arithmetic (attention.KERNELS' tags)
    activation: str | None = None  # the gated activation kernel's (activation.NATIVE_ACTIVATION)
    # The backend, where it is not the transformers one: another engine's arithmetic on the same
    # weights (vLLM in process reads the same folder) is another run.
    backend: str | None = None
    adapter: str | None = None
    adapter_hash: str | None = None
    shots: int = 0
    limit: int | None = None
    harness: str = "medboard"
    harness_version: str

    def key(self) -> str:
        # The model path is a label: the revision (a content hash or a commit) identifies it.
        parts = self.model_dump(exclude={"model", "adapter"})
        for field in ("matmul", "compiled", "attention", "activation", "backend"):
            if parts[field] is None:  # keys of runs from before the field existed stay valid
                del parts[field]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def json_safe(value: Any) -> Any:
    """`value` (dicts, lists, numbers, text) with each non-finite float as None: JSON has no
    nan (an undefined standard error), and a strict reader refuses Python's NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


class Score(BaseModel):
    value: float
    stderr: float  # nan where undefined (fewer than two samples)

    @field_validator("stderr", mode="before")
    @classmethod
    def _undefined(cls, value: Any) -> Any:
        """JSON has no nan: an undefined standard error is written as null, and read back as
        nan (a finished run of one question could not be read, and its next run failed)."""
        return math.nan if value is None else value

    @field_serializer("stderr", when_used="json")
    def _null(self, value: float) -> float | None:
        """...and written as null in every JSON dump (`results.json` of `--output` held
        Python's NaN, which strict JSON readers refuse)."""
        return value if math.isfinite(value) else None


class RunResult(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    key: str
    spec: RunSpec
    scores: dict[str, Score]
    n_samples: int
    prompt_tokens: int
    started_at: str
    finished_at: str
    wall_seconds: float
    data_source: str
    samples_file: str
    extra: dict[str, Any] = {}
