"""The `openai` backend as the registry knows it: a model behind an OpenAI-compatible server
(`openai:MODEL -M base_url=http://host:port/v1`), served.py does the work. It needs no extra
package: the standard library speaks HTTP."""

from typing import Any

from medboard.backends.base import Backend, ModelInfo
from medboard.backends.registry import BackendProvider
from medboard.backends.spec import Arg, ModelSpec
from medboard.errors import ModelError

ARGS = {
    "base_url": Arg(
        "the server's address, e.g. http://127.0.0.1:8000/v1 (a worker may point at its own; a "
        "public submission may name only the servers in MEDBOARD_PUBLIC_SERVERS)",
        per_run=True,
        server=True,
    ),
    "api_key_env": Arg(
        "the environment variable that holds the API key (the key is never stored; the "
        "operator's to set: a public submission may not name the server's variables)",
        per_run=True,
        public=False,  # its value is sent to base_url, which a public submission chooses
    ),
    "concurrency": Arg("requests at a time", kind=int, default=8, per_run=True, minimum=1),
    "timeout": Arg(
        "seconds a request may take", kind=float, default=120.0, per_run=True, minimum=1
    ),
    "retries": Arg(
        "retries on 429, 5xx and timeouts", kind=int, default=5, per_run=True, minimum=0
    ),
    "top_logprobs": Arg(
        "next-token log-probabilities asked for one-token choices (the server's --max-logprobs "
        "must allow as many); a choice not among them is asked alone",
        kind=int,
        default=20,
        per_run=True,
        minimum=0,
    ),
    "batch": Arg(
        "questions per batch (each batch is cached)", kind=int, default=64, per_run=True, minimum=1
    ),
}


class OpenAIProvider(BackendProvider):
    summary = "a model behind an OpenAI-compatible server (vLLM, llama.cpp, an API): openai:NAME"
    args = ARGS

    def check(self, spec: ModelSpec) -> None:
        if not spec.get("base_url"):
            raise ModelError(
                f"openai:{spec.model} needs the server's address: -M base_url=http://HOST:PORT/v1"
            )
        if not spec.model:
            raise ModelError("openai: needs the served model's name: openai:NAME")
        variable = spec.get("api_key_env")
        if variable:
            import os

            if not os.environ.get(variable):
                raise ModelError(f"the API key variable {variable} is not set")

    def create(self, spec: ModelSpec) -> Backend:
        from medboard.backends.served import ServedBackend

        keys = ("api_key_env", "concurrency", "timeout", "retries", "top_logprobs", "batch")
        options: dict[str, Any] = {k: spec.get(k) for k in keys if spec.get(k) is not None}
        return ServedBackend(spec.model, spec.get("base_url"), **options)  # type: ignore[return-value]

    def validate(self, spec: ModelSpec) -> ModelInfo:
        """Reachable, the model listed, and a probe request answered: what it can do."""
        self.check(spec)
        backend = self.create(spec)
        server = backend.server  # type: ignore[attr-defined]
        return ModelInfo(
            kind="served",
            location=str(spec.get("base_url")),
            revision=server.revision,
            architecture=server.kind,
            capabilities=tuple(sorted(backend.supports)),
            max_context=server.max_len,
            extra={
                "dtype": "served",
                "server": f"{server.kind} {server.version}",
                "served_model": server.model,
                "root": server.root,
            },  # fmt: skip
        )


PROVIDER: Any = OpenAIProvider()
