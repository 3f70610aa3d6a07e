"""A deterministic fake model for tests: log-likelihoods are a hash of (context, continuation).

It generates too: the answer to a prompt is a letter (or yes/no/maybe when the prompt asks for
one) chosen by a hash of the prompt, in one of several phrasings, one of which no extraction can
read, so runs exercise extraction and the `unparsed` score. A token is a word here.

Options, as `fake:key=value,...`: `delay` seconds per batch (to interrupt runs in tests),
`batch` questions per batch, `bias` a continuation that always wins (a letter-biased model; it
is also the generated answer), `chat=1` a chat template ("<|user|>...<|assistant|>").
"""

import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from medboard.backends.base import (
    Backend,
    ChoiceRequest,
    ChoiceResult,
    GenerateRequest,
    GenerateResult,
    ModelInfo,
    StopReason,
)
from medboard.backends.registry import BackendProvider
from medboard.backends.spec import ModelSpec
from medboard.errors import ModelError

PHRASINGS = (
    "{a}",
    "({a})",
    "Answer: {a}",
    "The answer is {a}.",
    "{a}. It is the best supported option.",
    "I cannot tell from the information given.",
)
_OPTION_LINE = re.compile(r"^\(?([A-H])[.)] ", re.MULTILINE)
_ASKS_LABELS = re.compile(r"\byes\b.{0,20}\bno\b.{0,20}\bmaybe\b", re.IGNORECASE | re.DOTALL)


def _pseudo_logprob(context: str, continuation: str) -> float:
    digest = hashlib.sha256(f"{context}\x00{continuation}".encode()).digest()
    return -0.1 - 10.0 * int.from_bytes(digest[:8], "big") / 2**64


def _option(key: str, text: str, kind: type, what: str, low: float, high: float) -> Any:
    """An option's value, or one line saying what it must be (it was a traceback in the CLI,
    HTTP 500 from the web, or a job that failed in the worker)."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:  # nan is never within
        raise ModelError(f"fake model option {key}={text!r}: {key} must be {what}")
    return value


class FakeBackend:
    supports = frozenset({"loglikelihood", "generate"})

    def __init__(self, options: str = "") -> None:
        self.delay = 0.0
        self.batch = 8
        self.bias: str | None = None
        self.chat = False
        for item in filter(None, options.split(",")):
            key, _, value = item.partition("=")
            if key == "delay":
                self.delay = _option(key, value, float, "a number of seconds from 0 to 60", 0, 60)
            elif key == "batch":
                self.batch = _option(key, value, int, "a whole number from 1 to 4096", 1, 4096)
            elif key == "bias":
                self.bias = value
            elif key == "chat":
                self.chat = value not in ("", "0", "false")
            else:
                raise ModelError(
                    f"unknown option '{key}' for the fake model (delay, batch, bias, chat)"
                )
        self.options = options

    def identity(self) -> dict[str, Any]:
        return {"model": "fake", "revision": self.options or "default", "dtype": "none"}

    def plan(self, requests: Sequence[ChoiceRequest]) -> list[list[int]]:
        order = list(range(len(requests)))
        return [order[i : i + self.batch] for i in range(0, len(order), self.batch)]

    def count_tokens(self, text: str, add_special_tokens: bool = True) -> int:
        return len(text.split())

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        if self.delay:
            time.sleep(self.delay)
        results = []
        for request in requests:
            scores = [_pseudo_logprob(request.context, c) for c in request.continuations]
            if self.bias is not None:
                scores = [
                    0.0 if c.strip() == self.bias else s
                    for c, s in zip(request.continuations, scores, strict=True)
                ]
            best = max(scores)
            results.append(
                ChoiceResult(
                    logprobs=tuple(scores),
                    greedy=tuple(s == best for s in scores),
                    n_tokens=tuple(len(c.split()) for c in request.continuations),
                    prompt_tokens=self.count_tokens(request.context),
                )
            )
        return results

    # -- generation ---------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str | None:
        if not self.chat:
            return None
        turns = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
        return turns + "<|assistant|>\n"

    def plan_generate(self, requests: Sequence[GenerateRequest]) -> list[list[int]]:
        order = list(range(len(requests)))
        return [order[i : i + self.batch] for i in range(0, len(order), self.batch)]

    def answer(self, prompt: str) -> str:
        """The full answer the fake model gives to `prompt` (before budget and stops)."""
        digest = hashlib.sha256(prompt.encode()).digest()
        if _ASKS_LABELS.search(prompt):
            answers: Sequence[str] = ("yes", "no", "maybe")
        else:
            answers = sorted(set(_OPTION_LINE.findall(prompt))) or ("A", "B", "C", "D")
        if self.bias is not None:
            return self.bias
        choice = answers[digest[1] % len(answers)]
        text = PHRASINGS[digest[0] % len(PHRASINGS)].format(a=choice)
        if "step by step" in prompt:
            text = f"Let me think step by step.\nOption {answers[0]} does not fit.\n{text}"
        return text

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        if self.delay:
            time.sleep(self.delay)
        results = []
        for request in requests:
            text = self.answer(request.prompt)
            stopped_by: StopReason = "eos"
            cuts = [text.find(s) for s in request.stop if s and s in text]
            if cuts:
                text, stopped_by = text[: min(cuts)], "stop"
            words = text.split(" ")
            if len(words) > request.max_new_tokens:
                text, stopped_by = " ".join(words[: request.max_new_tokens]), "length"
            results.append(
                GenerateResult(
                    text=text,
                    n_prompt_tokens=self.count_tokens(request.prompt),
                    n_new_tokens=len(text.split()),
                    stopped_by=stopped_by,
                )
            )
        return results


class FakeProvider(BackendProvider):
    """`fake` and `fake:key=value,...` (the options above, after the prefix)."""

    summary = "the deterministic test model (options after the prefix: fake:bias=A,batch=4)"
    public = False  # a test model: on a public board, only its operator queues one

    def create(self, spec: ModelSpec) -> Backend:
        return FakeBackend(spec.model)

    def validate(self, spec: ModelSpec) -> ModelInfo:
        backend = FakeBackend(spec.model)  # unknown options fail here, before queueing
        return ModelInfo(
            kind="fake", location="fake", revision=backend.identity()["revision"],
            architecture="fake",
        )  # fmt: skip


PROVIDER = FakeProvider()
