"""A model behind an OpenAI-compatible server (vLLM, llama.cpp's server, SGLang, TGI, an API):
the `openai` backend.

Log-likelihoods come from the completions endpoint with log-probabilities: each question is
tokenized by the server (its /tokenize, or llama-cpp-python's /extras/tokenize), split into
context and continuation exactly as the transformers backend splits it (lm-eval's
`_encode_pair`), and sent as token ids, so both read the same tokens at the same boundary.
One-token choices (the letter tasks) cost one request for the context: the log-probabilities
of its next token, for the choices' token ids where the server takes them (vLLM's
`logprob_token_ids`), else the top K over the whole vocabulary (`logprobs`), which hold every
choice whenever the choices are among the K most likely tokens; a choice that is not is asked
alone, so the numbers are always the model's own. A longer choice is one request with `echo`,
whose prompt log-probabilities are read at the choice's positions. (vLLM does not use its prefix
cache for requests that ask for prompt log-probabilities, so sharing the context has to come
from asking less, not from the cache.)

Generation goes through the completions endpoint with the protocol's prompt, or through chat
completions where the protocol asks for the model's chat template (`chat_prompt`): the server
applies its own template. Requests of a batch run concurrently, at most `concurrency` at a time.
"""

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from medboard.backends.base import (
    ChoiceRequest,
    ChoiceResult,
    GenerateRequest,
    GenerateResult,
    StopReason,
)
from medboard.backends.http import Client, Refused, ServerError
from medboard.errors import ModelError

CHAT = "\x00medboard-chat\x00"  # a prompt that is chat messages (chat_prompt), as JSON
# Wider top-k asks, for a server without echo to fall back on, when a choice is not among the
# top log-probabilities (the last asks for every token of any vocabulary up to its size).
WIDER = (1_000, 300_000)
END_TEXTS = ("</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<eos>", "<end_of_turn>")


@dataclass(frozen=True)
class Server:
    """What the server says of itself and of the model (probed once)."""

    kind: str  # vllm, llama.cpp, or openai-compatible
    version: str
    model: str  # the served model's id
    root: str  # where the server loaded it from, as it reports it ("" when it does not)
    max_len: int | None  # the context it accepts, in tokens
    tokenize: str | None  # the path of its tokenizer endpoint
    token_ids: bool  # whether log-probabilities can be keyed by, and asked for, token ids (vLLM)
    prompt_logprobs: bool  # whether echo + logprobs gives prompt log-probabilities
    # Whether a prompt may be token ids (llama-cpp-python: text only) and echo's log-probabilities
    # are where they belong (llama-cpp-python 0.3: one token late, its issue #1983).
    token_prompts: bool = True
    echo_aligned: bool = True

    @property
    def revision(self) -> str:
        return f"served:{self.kind}-{self.version}:{self.root or self.model}"


def split_url(url: str) -> tuple[str, str]:
    """(origin, API path) of a base URL such as http://host:8000/v1."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.netloc:
        raise ModelError(f"base_url '{url}' is not a server address (http://host:port/v1)")
    return f"{parts.scheme}://{parts.netloc}", (parts.path.rstrip("/") or "/v1")


class ServedBackend:
    """The `openai` backend: the model `name` served at `base_url`."""

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 5,
        top_logprobs: int = 20,
        batch: int = 64,
    ) -> None:
        origin, self.api = split_url(base_url)
        self.client = Client(origin, timeout=timeout, retries=retries, api_key_env=api_key_env)
        self.name = name
        self.concurrency = concurrency
        self.top_logprobs = top_logprobs
        self.batch = batch
        self._server: Server | None = None
        self._lock = threading.Lock()
        self._tokens: dict[str, list[int]] = {}
        self.sent_tokens = 0  # prompt tokens sent, for the cost report

    # -- the server -----------------------------------------------------------------------------
    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = probe(self.client, self.api, self.name)
        return self._server

    @property
    def supports(self) -> frozenset[str]:  # type: ignore[override]
        if self.server.prompt_logprobs:
            return frozenset({"loglikelihood", "generate"})
        return frozenset({"generate"})

    def identity(self) -> dict[str, Any]:
        server = self.server
        return {
            "model": f"openai:{self.name}",
            "revision": server.revision,
            "dtype": "served",
            "backend": "openai",
            "server": f"{server.kind} {server.version}",
            "served_model": server.model,
        }

    # -- tokens ---------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        key = f"{int(add_special_tokens)}{text}"
        if key not in self._tokens:
            self._tokens[key] = tokenize(self.client, self.server, text, add_special_tokens)
        return self._tokens[key]

    def count_tokens(self, text: str, add_special_tokens: bool = True) -> int:
        return len(self.encode(text, add_special_tokens))

    def pair(self, request: ChoiceRequest) -> tuple[list[int], list[list[int]]]:
        """The context's tokens and each continuation's, split as lm-eval's _encode_pair (and
        the transformers backend) split them: trailing spaces of the context move to the
        continuation, which is what the whole text has after the context's tokens."""
        if not request.context:
            raise ModelError("an empty context cannot be scored")
        context = request.context.rstrip()
        spaces = request.context[len(context) :]
        context_enc = self.encode(context)
        continuations = []
        for continuation in request.continuations:
            whole = self.encode(context + spaces + continuation)
            cont_enc = whole[len(context_enc) :]
            if not cont_enc:
                raise ModelError(f"continuation {continuation!r} encodes to no tokens")
            continuations.append(cont_enc)
        return context_enc, continuations

    # -- scoring --------------------------------------------------------------------------------
    def plan(self, requests: Sequence[ChoiceRequest]) -> list[list[int]]:
        order = list(range(len(requests)))
        return [order[i : i + self.batch] for i in range(0, len(order), self.batch)]

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        if not self.server.prompt_logprobs:
            raise ModelError(
                f"{self.server.kind} serving {self.name} gives no prompt log-probabilities "
                "(echo with logprobs), which the log-likelihood protocol needs: use a "
                "generative protocol (--protocol generative)"
            )
        return self._parallel(self._score, list(requests))

    def _score(self, request: ChoiceRequest) -> ChoiceResult:
        context, continuations = self.pair(request)
        self._check_length(len(context) + max(len(c) for c in continuations))
        read: dict[int, tuple[float, bool]] = {}  # choice -> (log-likelihood, greedy)
        single = [i for i, c in enumerate(continuations) if len(c) == 1]
        if single:
            # a server that takes text only reads the context's text, which it tokenizes as
            # its tokenizer endpoint did (the trailing spaces belong to the continuation)
            text = request.context.rstrip()
            prompt: list[int] | str = context if self.server.token_prompts else text
            spaces = request.context[len(text) :]
            keys = {i: self._key(continuations[i][0], spaces + request.continuations[i])
                    for i in single}  # fmt: skip
            wanted = [continuations[i][0] for i in single]
            top = self._next_token(prompt, wanted, self.top_logprobs)
            for k in WIDER if not self._echoes else ():  # no echo to fall back on: ask wider
                if all(key in top for key in keys.values()):
                    break
                top = self._next_token(prompt, wanted, k)
            best = max(top.values())
            for i, key in keys.items():
                if key in top:
                    read[i] = (top[key], top[key] >= best)
        for i, continuation in enumerate(continuations):
            if i not in read:  # longer, or not among the top K: asked alone
                read[i] = self._echo(context, continuation)
        return ChoiceResult(
            logprobs=tuple(read[i][0] for i in range(len(continuations))),
            greedy=tuple(read[i][1] for i in range(len(continuations))),
            n_tokens=tuple(len(c) for c in continuations),
            prompt_tokens=len(context),
        )

    def _key(self, token: int, text: str) -> str:
        """How the server names a token in its top log-probabilities."""
        return f"token_id:{token}" if self.server.token_ids else text

    def _check_length(self, tokens: int) -> None:
        limit = self.server.max_len
        if limit is not None and tokens + 1 > limit:
            raise ModelError(
                f"a question of {tokens} tokens does not fit {self.name}'s context of {limit} "
                "tokens on the server (its max model length)"
            )

    def _completion(self, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = self.client.post(f"{self.api}/completions", {"model": self.name, **body})
        try:
            choice = answer["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise ServerError(f"the completion has no choices: {str(answer)[:120]}") from None
        prompt = body.get("prompt")
        with self._lock:
            self.sent_tokens += len(prompt) if isinstance(prompt, list) else 0
        return choice

    @property
    def _echoes(self) -> bool:
        """Whether a choice can be scored alone with echo (token prompts, aligned values)."""
        return self.server.token_prompts and self.server.echo_aligned

    def _next_token(self, context: list[int] | str, wanted: list[int], k: int) -> dict[str, float]:
        """Log-probabilities of the token after `context`: the `wanted` tokens' and the greedy
        one's where the server takes token ids (vLLM's logprob_token_ids), else the top k."""
        body: dict[str, Any] = {"prompt": context, "max_tokens": 1, "temperature": 0.0}
        if self.server.token_ids:
            body |= {"logprobs": 1, "logprob_token_ids": wanted, **self._vllm_extra()}
        else:
            body |= {"logprobs": k}
        choice = self._completion(body)
        if not self.server.token_prompts and not (choice.get("logprobs") or {}).get("tokens"):
            # llama-cpp-python returns no log-probabilities when the token it picks ends the
            # text: asked again with the end tokens biased away (which leaves the reported
            # log-probabilities as they are), it picks another one and reports them
            choice = self._completion({**body, "logit_bias": self._end_tokens()})
        try:
            top = choice["logprobs"]["top_logprobs"][0]
        except (KeyError, IndexError, TypeError):
            raise ServerError(f"the completion has no top_logprobs: {str(choice)[:120]}") from None
        return {str(k): float(v) for k, v in top.items()}

    def _end_tokens(self) -> dict[str, float]:
        """A logit bias that keeps the usual end-of-text tokens from being picked (those of
        their texts that the server's tokenizer reads as one token)."""
        bias = {}
        for text in END_TEXTS:
            tokens = self.encode(text, add_special_tokens=False)
            if len(tokens) == 1:
                bias[str(tokens[0])] = -100.0
        return bias

    def _echo(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
        """The continuation's summed log-probability after the context, and whether greedy
        decoding gives it (each of its tokens the most likely at its place)."""
        if not self._echoes:
            raise ModelError(
                f"{self.server.kind} {self.server.version} cannot score a choice of several "
                "tokens: its echoed log-probabilities are one token late (llama-cpp-python "
                "issue 1983) and it takes no token ids; choices of one token (letters) work"
            )
        prompt = context + continuation
        body = {"prompt": prompt, "max_tokens": 1, "temperature": 0.0, "echo": True}
        body |= {"logprobs": 1, **self._vllm_extra()}
        choice = self._completion(body)
        try:
            values = choice["logprobs"]["token_logprobs"]
            tops = choice["logprobs"]["top_logprobs"]
            start = len(context)
            read = [float(values[p]) for p in range(start, len(prompt))]
            bests = [max(float(v) for v in (tops[p] or {0: values[p]}).values())
                     for p in range(start, len(prompt))]  # fmt: skip
        except (KeyError, IndexError, TypeError, ValueError):
            raise ServerError(
                f"the completion has no prompt log-probabilities: {str(choice)[:120]}"
            ) from None
        return sum(read), all(v >= b for v, b in zip(read, bests, strict=True))

    def _vllm_extra(self) -> dict[str, Any]:
        return {"return_tokens_as_token_ids": True} if self.server.token_ids else {}

    def _parallel(self, work: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        if len(items) <= 1 or self.concurrency <= 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(min(self.concurrency, len(items))) as pool:
            return list(pool.map(work, items))

    # -- generation -----------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str | None:
        """The messages themselves: generation sends them to chat completions, where the server
        applies the model's chat template."""
        return CHAT + json.dumps([dict(m) for m in messages], ensure_ascii=False)

    def plan_generate(self, requests: Sequence[GenerateRequest]) -> list[list[int]]:
        order = list(range(len(requests)))
        return [order[i : i + self.batch] for i in range(0, len(order), self.batch)]

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        return self._parallel(self._generate, list(requests))

    def _generate(self, request: GenerateRequest) -> GenerateResult:
        body: dict[str, Any] = {
            "model": self.name,
            "max_tokens": request.max_new_tokens,
            "temperature": 0.0,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.prompt.startswith(CHAT):
            body["messages"] = json.loads(request.prompt[len(CHAT) :])
            answer = self.client.post(f"{self.api}/chat/completions", body)
        else:
            body["prompt"] = request.prompt
            answer = self.client.post(f"{self.api}/completions", body)
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] if "message" in choice else choice["text"]
            usage = answer.get("usage") or {}
        except (KeyError, IndexError, TypeError):
            raise ServerError(f"the completion has no text: {str(answer)[:120]}") from None
        stopped: StopReason = "length" if choice.get("finish_reason") == "length" else "eos"
        if stopped == "eos" and isinstance(choice.get("stop_reason"), str):
            stopped = "stop"
        return GenerateResult(
            text=text or "",
            n_prompt_tokens=int(usage.get("prompt_tokens") or 0),
            n_new_tokens=int(usage.get("completion_tokens") or 0),
            stopped_by=stopped,
        )


def probe(client: Client, api: str, name: str) -> Server:
    """Ask the server what it serves: one line when it cannot be reached, does not serve
    `name`, or answers garbage."""
    listed = client.get(f"{api}/models")
    try:
        models = {m["id"]: m for m in listed["data"]}
    except (KeyError, TypeError):
        raise ServerError(f"{client.base}{api}/models answered no model list") from None
    if name not in models:
        served = ", ".join(sorted(models)) or "none"
        raise ModelError(f"{client.base} does not serve '{name}' (it serves: {served})")
    model = models[name]
    kind, version = _kind(client, model)
    tokenize = _tokenizer_path(client, name)
    llama = kind == "llama.cpp"
    max_len = model.get("max_model_len") or model.get("meta", {}).get("n_ctx_train")
    server = Server(
        kind=kind, version=version, model=name, root=str(model.get("root") or ""),
        max_len=int(max_len) if max_len else None, tokenize=tokenize,
        token_ids=kind == "vllm", prompt_logprobs=True, token_prompts=not llama,
        echo_aligned=not llama,
    )  # fmt: skip
    return _with_prompt_logprobs(client, api, server)


def _kind(client: Client, model: Mapping[str, Any]) -> tuple[str, str]:
    """(server kind, version): vLLM answers /version; llama-cpp-python owns its models as
    'me' and has /extras; anything else is an OpenAI-compatible server of unknown kind."""
    try:
        version = client.get("/version")
        if isinstance(version, dict) and "version" in version and model.get("owned_by") == "vllm":
            return "vllm", str(version["version"])
    except ModelError:
        pass
    owner = str(model.get("owned_by") or "")
    if owner in ("me", "llamacpp", "llama.cpp"):
        try:  # llama-cpp-python's version is its API's
            return "llama.cpp", str(client.get("/openapi.json")["info"]["version"])
        except (ModelError, KeyError, TypeError):
            return "llama.cpp", "unknown"
    return "openai-compatible", owner or "unknown"


def _tokenizer_path(client: Client, name: str) -> str | None:
    for path, body in (
        ("/tokenize", {"model": name, "prompt": "a", "add_special_tokens": False}),
        ("/extras/tokenize", {"input": "a"}),
    ):
        try:
            answer = Client(client.base, timeout=client.timeout, retries=0,
                            api_key_env=client.api_key_env).post(path, body)  # fmt: skip
        except ModelError:
            continue
        if isinstance(answer, dict) and isinstance(answer.get("tokens"), list):
            return path
    return None


def _with_prompt_logprobs(client: Client, api: str, server: Server) -> Server:
    """Whether echo + logprobs gives log-probabilities of the prompt's tokens (OpenAI's own chat
    models: no)."""
    body = {"model": server.model, "prompt": "Question: Is this a test?\nAnswer:",
            "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 1}  # fmt: skip
    try:
        choice = client.post(f"{api}/completions", body)["choices"][0]
        values = choice["logprobs"]["token_logprobs"]
        works = isinstance(values, list) and any(isinstance(v, float) for v in values[:-1])
    except (Refused, KeyError, IndexError, TypeError):  # refused, or answered without them
        works = False
    return Server(**{**server.__dict__, "prompt_logprobs": works})


def tokenize(client: Client, server: Server, text: str, add_special_tokens: bool) -> list[int]:
    """The server's tokens of `text` (with the model's special tokens when asked)."""
    if server.tokenize is None:
        raise ModelError(
            f"{client.base} has no tokenizer endpoint (/tokenize, /extras/tokenize): scoring "
            "choices needs the server's tokens"
        )
    if server.tokenize == "/tokenize":
        body = {"model": server.model, "prompt": text, "add_special_tokens": add_special_tokens}
    else:
        body = {"input": text}  # llama-cpp-python: special tokens as the model's metadata says
    answer = client.post(server.tokenize, body)
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
        raise ServerError(f"{client.base}{server.tokenize} answered no token list")
    return tokens
