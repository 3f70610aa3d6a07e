"""The backend interface: typed requests in, log-likelihoods or generated texts out.

A backend knows no benchmark: it scores continuations and decodes greedily until a stop.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ChoiceRequest:
    """Score each continuation as a continuation of the context (one multiple-choice question)."""

    context: str
    continuations: tuple[str, ...]


@dataclass(frozen=True)
class ChoiceResult:
    """Per continuation: summed log-probability, whether greedy decoding yields it, its tokens."""

    logprobs: tuple[float, ...]
    greedy: tuple[bool, ...]
    n_tokens: tuple[int, ...]
    prompt_tokens: int  # tokens of the context that the model read


StopReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True)
class GenerateRequest:
    """Decode greedily after `prompt` until an end-of-sequence token, a stop string or the budget.

    The budget is part of the request (not of the backend) so that the answer cache, keyed by a
    hash of the request, never mixes answers decoded under different budgets or stops.
    """

    prompt: str
    max_new_tokens: int
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")


@dataclass(frozen=True)
class GenerateResult:
    """The generated text (cut before the first stop string, special tokens removed).

    `n_new_tokens` counts every token the model produced, the end-of-sequence token included;
    `tokens` are those token ids (empty for backends that have no tokens).
    """

    text: str
    n_prompt_tokens: int
    n_new_tokens: int
    stopped_by: StopReason
    tokens: tuple[int, ...] = ()


class Backend(Protocol):
    """What the runner needs from an engine."""

    supports: frozenset[str]  # "loglikelihood", "generate"

    def identity(self) -> dict[str, Any]:
        """Everything about the model that decides its numbers (computed without loading it)."""
        ...

    def plan(self, requests: Sequence[ChoiceRequest]) -> list[list[int]]:
        """Split requests into batches (indices), deterministically for the same requests.

        The runner caches answers per batch, so a resumed run computes the remaining batches
        with exactly the composition they would have had: results are identical bit for bit.
        """
        ...

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        """Answer one batch."""
        ...

    def count_tokens(self, text: str, add_special_tokens: bool = True) -> int:
        """Tokens of `text`: as a prompt, or with add_special_tokens=False as a bare string."""
        ...


class GenerativeBackend(Backend, Protocol):
    """A backend that also generates (it has "generate" in `supports`)."""

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str | None:
        """The model's chat template applied to `messages`, ready for the assistant's turn.

        None when the model has no chat template: the caller then uses a plain prompt.
        """
        ...

    def plan_generate(self, requests: Sequence[GenerateRequest]) -> list[list[int]]:
        """Batches of generation requests, deterministic for the same requests (see `plan`)."""
        ...

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Answer one batch: greedy decoding, identical to decoding each request alone."""
        ...


@dataclass(frozen=True)
class ModelInfo:
    """What checking a model as a submission found (registry.validate), stored with the job."""

    kind: str  # how the backend found it: dir, gguf, hub, a server ...
    location: str  # the local directory, file or address that was checked
    revision: str  # a content hash, a Hub commit, or what a server reports
    parameters: int | None = None
    architecture: str = ""
    license: str | None = None
    adapter_hash: str = ""  # "" without an adapter
    capabilities: tuple[str, ...] = ("loglikelihood", "generate")
    max_context: int | None = None  # tokens, where the backend knows it
    extra: dict[str, Any] = field(default_factory=dict)  # anything else the backend reports

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
