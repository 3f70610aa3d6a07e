"""The `vllm` backend as the registry knows it: vLLM's engine in this process
(`vllm:MODEL_DIR_OR_HUB_ID`), for a user with GPUs; vllm_local.py does the work, with the
openai backend's scoring. vLLM comes with its own torch and transformers: install it in a venv
of its own (docs/explanation/backends.md)."""

from typing import Any

from medboard.backends.base import Backend
from medboard.backends.registry import BackendProvider
from medboard.backends.spec import Arg, ModelSpec

ENGINE = ("dtype", "tensor_parallel_size", "max_model_len", "gpu_memory_utilization")

ARGS = {
    "dtype": Arg(
        "auto, float32, bfloat16 or float16",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
    ),  # fmt: skip
    "tensor_parallel_size": Arg("GPUs one model is split over", kind=int, default=1, minimum=1),
    "max_model_len": Arg("the longest prompt plus answer, in tokens", kind=int, minimum=1),
    "gpu_memory_utilization": Arg(
        "the share of GPU memory vLLM may take",
        kind=float,
        default=0.9,
        per_run=True,
        minimum=0.01,
        maximum=1.0,
    ),
    "enforce_eager": Arg("no CUDA graphs (slower, starts faster)", kind=bool, per_run=True),
    "batch": Arg(
        "questions per batch (each batch is cached)", kind=int, default=256, per_run=True, minimum=1
    ),
}


class VLLMProvider(BackendProvider):
    summary = "vLLM's engine in this process (a GPU user's): vllm:MODEL_DIR_OR_HUB_ID"
    public = False  # takes no submissions (no validate): a user's own evaluations
    args = ARGS
    requires = ("vllm",)
    install = (
        "pip install vllm (in a venv of its own: it pins its torch; docs/explanation/backends.md)"
    )

    def create(self, spec: ModelSpec) -> Backend:
        from medboard.backends.vllm_local import VLLMBackend

        engine = {k: spec.get(k) for k in (*ENGINE, "enforce_eager") if spec.get(k) is not None}
        return VLLMBackend(spec.model, engine, spec.get("batch", 256))  # type: ignore[return-value]


PROVIDER: Any = VLLMProvider()
