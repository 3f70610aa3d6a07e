"""The transformers backend, as the registry knows it: its arguments, and how it is made,
checked and cleaned up after. Imports nothing heavy: torch and transformers come with `create`.
"""

from collections.abc import Mapping
from typing import Any

from medboard.backends.activation import ACTIVATION_CHOICES
from medboard.backends.attention import ATTENTION_CHOICES
from medboard.backends.base import Backend, ModelInfo
from medboard.backends.hf_loading import DTYPES
from medboard.backends.kernels import COMPILE_CHOICES, MATMUL_CHOICES
from medboard.backends.registry import BackendProvider
from medboard.backends.spec import Arg, ModelSpec
from medboard.errors import ModelError

ARGS = {
    "dtype": Arg("precision of the weights and activations", default="float32", choices=DTYPES),
    "device": Arg("cpu, cuda or cuda:N", default="cpu", per_run=True),
    "adapter": Arg("a PEFT adapter directory, merged into the model"),
    "revision": Arg("Hub revision: branch, tag or commit"),
    "max_parameters": Arg(
        "refuse a Hub model with more parameters (counted from its safetensors headers on the "
        "Hub) before its weights are downloaded, e.g. 8e9; a worker sets it for public "
        "submissions from MEDBOARD_PUBLIC_MAX_PARAMS",
        kind=float,
        per_run=True,
        minimum=1,
    ),
    "batch_tokens": Arg(
        "tokens per scoring batch (default 4096)", kind=int, per_run=True, minimum=1
    ),
    "compile": Arg(
        "decoder layers through torch.compile while scoring: auto (bfloat16 and float16 on "
        "the CPU, with a C++ compiler), on or off",
        default="auto",
        choices=COMPILE_CHOICES,
        per_run=True,
    ),
    "attention": Arg(
        "attention while scoring: auto (medboard's kernel where it runs faster: AMX, else "
        "AVX-512 BF16), torch, amx or avx512",
        default="auto",
        choices=ATTENTION_CHOICES,
        per_run=True,
    ),
    "activation": Arg(
        "the gated MLPs while scoring: auto (medboard's kernels where they run faster), "
        "torch or native",
        default="auto",
        choices=ACTIVATION_CHOICES,
        per_run=True,
    ),
    "bf16_matmul": Arg(
        "bfloat16 products: auto (the faster on this machine), native or float32",
        default="auto",
        choices=MATMUL_CHOICES,
        per_run=True,
    ),
}


class TransformersProvider(BackendProvider):
    summary = "a transformers causal LM in this process: a directory, a .gguf file or a Hub id"
    args = ARGS
    requires = ("torch", "transformers")
    install = "pip install 'medboard[hf]'"

    def create(self, spec: ModelSpec) -> Backend:
        from medboard.heap import long_lived

        with long_lived():  # torch and transformers: imported once, kept to the end
            from medboard.backends.hf import HFBackend

        get = spec.get
        return HFBackend(
            spec.model,
            dtype=get("dtype", "float32"),
            device=get("device", "cpu"),
            adapter=get("adapter"),
            revision=get("revision"),
            batch_tokens=get("batch_tokens"),
            matmul=get("bf16_matmul", "auto"),
            compile_mode=get("compile", "auto"),
            attention=get("attention", "auto"),
            activation=get("activation", "auto"),
            max_parameters=get("max_parameters"),
        )

    def check(self, spec: ModelSpec) -> None:
        from medboard.backends.hf_loading import resolve_source

        resolve_source(spec.model, spec.get("revision"))  # a missing model file: one line now
        self.check_run(spec.options)

    def check_run(self, args: Mapping[str, Any]) -> None:
        device = str(args.get("device") or "cpu")
        if device == "cpu":
            return
        if not device.startswith("cuda"):
            raise ModelError(f"unknown device '{device}' (cpu, cuda or cuda:N)")
        import torch

        if not torch.cuda.is_available():
            raise ModelError(f"device '{device}' asked for, but CUDA is not available here")

    def validate(self, spec: ModelSpec) -> ModelInfo:
        from medboard.backends.hf_validate import validate_model

        return validate_model(
            spec.model, spec.get("revision") or "", spec.get("adapter"), spec.get("max_parameters")
        )

    def release(self) -> None:
        from medboard.backends.kernels import release_freed_memory

        release_freed_memory()


PROVIDER: Any = TransformersProvider()
