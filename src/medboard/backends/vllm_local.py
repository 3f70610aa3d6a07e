"""vLLM in this process (the `vllm` backend), for a user with GPUs: the openai backend's scoring
and generation (served.py), with the HTTP server replaced by the engine itself.

`LocalClient` answers the requests served.py makes (completions, chat completions, tokenize)
from a `vllm.LLM`, in its OpenAI shapes, so both backends read the same numbers the same way.
The requests of a batch arrive from served.py's threads one at a time; a collector thread
gathers those that arrive together and hands them to the engine in one `generate` call, where
vLLM batches them as its server would.
"""

import queue
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from medboard.backends.served import ServedBackend, Server
from medboard.errors import ModelError

GATHER_SECONDS = 0.005  # how long the collector waits for more requests to join a call


class LocalClient:
    """served.py's Client, answered by a vLLM engine in this process."""

    base = "vllm (in process)"

    def __init__(self, llm: Any, name: str) -> None:
        self.llm, self.name = llm, name
        self.tokenizer = llm.get_tokenizer()
        self._requests: queue.Queue[tuple[dict[str, Any], Future[dict[str, Any]]]] = queue.Queue()
        self._engine = threading.Lock()  # one engine call at a time (completions or chat)
        threading.Thread(target=self._collect, daemon=True).start()

    def get(self, path: str) -> Any:
        raise ModelError(f"vllm in process has no {path}")

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        if path == "/tokenize":
            add = bool(body.get("add_special_tokens", True))
            return {"tokens": self.tokenizer.encode(body["prompt"], add_special_tokens=add)}
        if path.endswith("/chat/completions"):
            with self._engine:
                output = self.llm.chat(list(body["messages"]), _params(body), use_tqdm=False)[0]
            return _answer(output, {"message": {"role": "assistant"}})
        if path.endswith("/completions"):
            answer: Future[dict[str, Any]] = Future()
            self._requests.put((dict(body), answer))
            return answer.result()
        raise ModelError(f"vllm in process has no {path}")

    def _collect(self) -> None:
        while True:
            batch = [self._requests.get()]
            threading.Event().wait(GATHER_SECONDS)
            while not self._requests.empty():
                batch.append(self._requests.get_nowait())
            try:
                with self._engine:
                    answers = self._complete([body for body, _ in batch])
            except Exception as exc:  # every waiting request learns why
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                future.set_result(answer)

    def _complete(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        prompts = [
            {"prompt_token_ids": list(b["prompt"])}
            if isinstance(b["prompt"], list)
            else b["prompt"]
            for b in bodies
        ]
        params = [_params(b) for b in bodies]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [
            _answer(o, {}, echo=bool(b.get("echo"))) for o, b in zip(outputs, bodies, strict=True)
        ]


def _params(body: Mapping[str, Any]) -> Any:
    from vllm import SamplingParams

    echo = bool(body.get("echo"))
    wanted = body.get("logprob_token_ids")
    return SamplingParams(
        max_tokens=int(body.get("max_tokens") or 16),
        temperature=float(body.get("temperature") or 0.0),
        # the engine wants as many log-probabilities as ids asked for (the server takes any)
        logprobs=len(wanted) if wanted else body.get("logprobs"),
        logprob_token_ids=wanted,
        prompt_logprobs=1 if echo else None,
        stop=body.get("stop"),
    )


def _key(token: int) -> str:
    return f"token_id:{token}"


def _answer(output: Any, choice: dict[str, Any], echo: bool = False) -> dict[str, Any]:
    """A vLLM RequestOutput in the OpenAI completions shape served.py reads."""
    generated = output.outputs[0]
    tokens, values, tops = [], [], []
    if echo:  # the prompt's tokens first, the first without a value
        for position, token in enumerate(output.prompt_token_ids):
            entry = output.prompt_logprobs[position] if position else None
            tokens.append(_key(token))
            values.append(entry[token].logprob if entry else None)
            tops.append({_key(t): lp.logprob for t, lp in entry.items()} if entry else None)
    for position, token in enumerate(generated.token_ids):
        entry = generated.logprobs[position] if generated.logprobs else None
        tokens.append(_key(token))
        values.append(entry[token].logprob if entry else None)
        tops.append({_key(t): lp.logprob for t, lp in entry.items()} if entry else None)
    logprobs = {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops}
    body = {
        "index": 0,
        "text": generated.text,
        "logprobs": logprobs,
        "finish_reason": generated.finish_reason,
        "stop_reason": generated.stop_reason,
    }
    if "message" in choice:
        body = {**body, "message": {"role": "assistant", "content": generated.text}}
    usage = {"prompt_tokens": len(output.prompt_token_ids),
             "completion_tokens": len(generated.token_ids)}  # fmt: skip
    return {"choices": [body], "usage": usage}


class VLLMBackend(ServedBackend):
    """The `vllm` backend: a vLLM engine in this process, scored as the openai backend scores a
    vLLM server."""

    def __init__(self, model: str, engine: Mapping[str, Any], batch: int = 256) -> None:
        import vllm

        self.llm = vllm.LLM(model=model, max_logprobs=-1, **engine)
        config = self.llm.llm_engine.model_config
        self.client = LocalClient(self.llm, model)  # type: ignore[assignment]
        self.api = "/v1"
        self.name = model
        self.concurrency = batch  # each request of a batch on its own thread, gathered
        self.top_logprobs = 20
        self.batch = batch
        self._lock = threading.Lock()
        self._tokens = {}
        self.sent_tokens = 0
        self._server = Server(
            kind="vllm", version=vllm.__version__, model=model, root=model,
            max_len=int(config.max_model_len), tokenize="/tokenize", token_ids=True,
            prompt_logprobs=True,
        )  # fmt: skip
        self._dtype = str(config.dtype).removeprefix("torch.")

    def identity(self) -> dict[str, Any]:
        """The weights are here: a local folder is identified by its content hash, as the
        transformers backend identifies it; a Hub id by its name."""
        from pathlib import Path

        from medboard.backends.hf_loading import hash_dir

        folder = Path(self.name)
        revision = "sha256:" + hash_dir(folder) if folder.is_dir() else f"hub:{self.name}"
        return {"model": f"vllm:{self.name}", "revision": revision, "dtype": self._dtype,
                "backend": f"vllm-{self.server.version}",
                "server": f"vllm {self.server.version} (in process)"}  # fmt: skip
