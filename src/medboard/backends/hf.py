"""Choice log-likelihoods from a transformers causal LM, computed as lm-evaluation-harness does:
the model, its tokenization and the batch plans here, the scoring passes in hf_scoring, greedy
generation in hf_generate.

Tokenization follows lm-eval's `_encode_pair`: the context and context+continuation are encoded
whole and the continuation is what the longer encoding adds; inputs longer than the model's
window are cut from the left. When every choice of a question is one token, the question takes
one forward pass (all choices read the same position).
"""

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from medboard.backends.activation import FUSED_MLP, FusedActivation, activation_mode
from medboard.backends.attention import KernelAttention, attention_mode, packs
from medboard.backends.base import ChoiceRequest, GenerateRequest, GenerateResult
from medboard.backends.hf_generate import eos_token_ids, greedy_generate, plan_generate
from medboard.backends.hf_loading import (
    DTYPES,
    check_adapter,
    gguf_to_dir,
    hash_dir,
    load_model,
    resolve_source,
    source_revision,
)
from medboard.backends.hf_scoring import Row, Scoring
from medboard.backends.kernels import (
    COMPILED_ARITHMETIC,
    CompiledLayers,
    compile_wanted,
    keep_freed_memory,
    matmul_mode,
    use_float32_matmul,
)
from medboard.backends.last_layer import LastLayerRows, last_layer_rows
from medboard.backends.packing import plan_packed
from medboard.backends.verdicts import remembered, software
from medboard.errors import ModelError

DEFAULT_MAX_LENGTH = 2048  # lm-eval's default when neither config nor tokenizer says
DEFAULT_BATCH_TOKENS = 4096
# A generation batch may hold this many times --batch-tokens of prompt plus new tokens: decoding
# reads the weights once per step for the whole batch, so wide batches are what make it fast.
GENERATE_TOKENS_FACTOR = 4
MAX_BATCH_ROWS = 64


def max_length(config: Any, tokenizer: Any) -> int:
    """The model's window, resolved as lm-eval's `resolve_max_length`."""
    cfg = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            return int(value)
    model_max = getattr(tokenizer, "model_max_length", None)
    if model_max is not None and model_max < 10**29:
        return int(model_max)
    return DEFAULT_MAX_LENGTH


def build_rows(context_enc: list[int], cont_encs: list[list[int]], window: int) -> list[Row]:
    """The model inputs for one question: one row for all one-token choices, one per longer one."""
    rows: list[Row] = []
    single = [(i, enc) for i, enc in enumerate(cont_encs) if len(enc) == 1]
    if single:
        tokens = tuple((context_enc + single[0][1])[-(window + 1) :][:-1])
        last = (len(tokens) - 1,)
        rows.append(Row(tokens, tuple((i, last, tuple(enc)) for i, enc in single)))
    for i, enc in enumerate(cont_encs):
        if len(enc) == 1:
            continue
        if len(enc) > window:
            raise ModelError(f"a continuation of {len(enc)} tokens exceeds the window {window}")
        tokens = tuple((context_enc + enc)[-(window + 1) :][:-1])
        positions = tuple(range(len(tokens) - len(enc), len(tokens)))
        rows.append(Row(tokens, ((i, positions, tuple(enc)),)))
    return rows


class HFBackend(Scoring):
    supports = frozenset({"loglikelihood", "generate"})

    def __init__(
        self,
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
        max_parameters: float | None = None,
    ) -> None:
        if dtype not in DTYPES:
            raise ModelError(f"unknown dtype '{dtype}' (choose from {', '.join(DTYPES)})")
        self.matmul = matmul_mode(dtype, device, matmul)
        self.compile = compile_wanted(dtype, device, compile_mode)
        self.attention = attention_mode(dtype, device, attention)
        self.activation = activation_mode(dtype, device, activation, self.compile, self.matmul)
        self.spec = model
        self.dtype = dtype
        self.device = device
        self.adapter = adapter
        self.batch_tokens = batch_tokens or DEFAULT_BATCH_TOKENS
        self.source, self.revision = source_revision(
            resolve_source(model, revision), max_parameters
        )
        self.adapter_hash = hash_dir(check_adapter(adapter)) if adapter else None
        self._model: Any = None
        self._tokenizer: Any = None
        self._rows: dict[ChoiceRequest, list[Row]] = {}
        self._context_tokens: dict[ChoiceRequest, int] = {}
        self._prompt_ids: dict[GenerateRequest, list[int]] = {}

    # -- identity and loading -------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        return {
            "model": self.spec,
            "revision": self.revision,
            "dtype": self.dtype,
            "adapter": self.adapter,
            "adapter_hash": self.adapter_hash,
            "matmul": self.matmul,
            "compiled": COMPILED_ARITHMETIC if self.compile else None,
            "attention": self.attention,
            "activation": self.activation,
        }

    def model_dir(self) -> Path:
        """The local directory the model loads from (a GGUF file is dequantized into one)."""
        if self.source.kind == "gguf":
            return gguf_to_dir(Path(self.source.location), self.revision)
        return Path(self.source.location)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        self._load()

    def _load(self) -> None:
        if self._model is not None:
            return
        if self.device == "cpu":
            keep_freed_memory()
        self._model, self._tokenizer = load_model(
            self.model_dir(), self.spec, self.dtype, self.device, self.adapter
        )
        if self.matmul == "float32":
            use_float32_matmul(self._model)
        self.window = max_length(self._model.config, self._tokenizer)
        self._full_forward = not self._verdict("head-matches-forward", self._head_matches_forward)
        self._eos = eos_token_ids(self._model, self._tokenizer)
        # What scoring passes switch on: compiled layers, the AMX attention kernel, the gated
        # activation kernel.
        self._scoring: list[AbstractContextManager[Any]] = []
        if self.compile:
            self._scoring.append(CompiledLayers(self._model))
        # Scoring passes pack several questions into one row where a kernel does the
        # attention (it keeps each question to itself): no padding, few batch shapes.
        self._attention: KernelAttention | None = None
        if self.attention:
            self._attention = KernelAttention(self._model, self.attention)
            self._scoring.append(self._attention)
        self._packs = self._attention is not None and packs(self._model)
        if self.activation:
            products = self.activation == FUSED_MLP
            self._scoring.append(FusedActivation(self._model, products))
        # Last: the last layer past its attention only at the positions scoring reads.
        self._last_rows: LastLayerRows | None = (
            None
            if self._full_forward
            else last_layer_rows(
                self._model, self.compile, self.device, self._tolerance, self._verdict
            )
        )
        if self._last_rows is not None:
            self._scoring.append(self._last_rows)

    def _verdict(self, question: str, work: Callable[[], bool]) -> bool:
        """`work()`, a check of the loaded model, answered once per machine for this model (its
        identity and device) and software (verdicts.remembered)."""
        depends = {**self.identity(), "device": self.device, **software()}
        return remembered(question, depends, work)

    def _head_matches_forward(self) -> bool:
        """Whether projecting selected hidden states gives the model's own logits.

        Checked once on a short input: an architecture that transforms its logits in a way
        `_head` does not know (a scale, a bias) falls back to the full forward pass.
        """
        import torch

        ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], device=self.device)
        with torch.inference_mode():
            full = self._model(input_ids=ids).logits[0].float()
            hidden = self._model.base_model(input_ids=ids).last_hidden_state[0]
            mine = self._head(hidden).float()
        return bool(torch.allclose(full, mine, atol=self._tolerance, rtol=0))

    @property
    def _tolerance(self) -> float:
        """How far two computations of the same numbers may differ in the load-time checks."""
        return 1e-3 if self.dtype == "float32" else 5e-2

    @property
    def tokenizer(self) -> Any:
        self._load()
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The loaded transformers model (loaded on first use)."""
        self._load()
        return self._model

    # -- tokenization (lm-eval's tok_encode / _encode_pair) ----------------------------------
    def _encode(self, text: str) -> list[int]:
        return self._encode_many([text])[0]

    def count_tokens(self, text: str, add_special_tokens: bool = True) -> int:
        if not add_special_tokens:
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        return len(self._encode(text))

    def _encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """lm-eval's tok_encode of every text (special tokens added unless the text already
        starts with the BOS token), in at most two batched tokenizer calls: the same ids as one
        call per text, and a fast tokenizer spreads a batch over the cores."""
        tokenizer = self.tokenizer
        prefix_id = tokenizer.bos_token_id
        if prefix_id is None:
            prefix_id = tokenizer.eos_token_id
        prefix = tokenizer.decode(prefix_id) if prefix_id is not None else None
        marked = [prefix is not None and text.startswith(prefix) for text in texts]
        encoded: list[list[int]] = [[] for _ in texts]
        for special in (True, False):  # texts that already carry the BOS token: no second one
            indices = [i for i, m in enumerate(marked) if m != special]
            if indices:
                batch = tokenizer([texts[i] for i in indices], add_special_tokens=special)
                for i, ids in zip(indices, batch["input_ids"], strict=True):
                    encoded[i] = list(ids)
        return encoded

    def rows(self, request: ChoiceRequest) -> list[Row]:
        if request not in self._rows:
            self.prepare([request])
        return self._rows[request]

    def prepare(self, requests: Sequence[ChoiceRequest]) -> None:
        """Tokenize the requests not seen before (lm-eval's `_encode_pair`), all in one batch."""
        todo = [r for r in dict.fromkeys(requests) if r not in self._rows]
        texts: list[str] = []
        for request in todo:
            if not request.context:
                raise ModelError("an empty context cannot be scored")
            context = request.context.rstrip()
            spaces = request.context[len(context) :]
            texts.append(context)
            texts.extend(context + spaces + continuation for continuation in request.continuations)
        encoded = iter(self._encode_many(texts))
        for request in todo:
            context_enc = next(encoded)
            cont_encs = []
            for continuation in request.continuations:
                cont_enc = next(encoded)[len(context_enc) :]
                if not cont_enc:
                    raise ModelError(f"continuation {continuation!r} encodes to no tokens")
                cont_encs.append(cont_enc)
            self._rows[request] = build_rows(context_enc, cont_encs, self.window)
            self._context_tokens[request] = min(len(context_enc), self.window)

    # -- batching -----------------------------------------------------------------------------
    def plan(self, requests: Sequence[ChoiceRequest]) -> list[list[int]]:
        """Longest questions first; a batch holds whole questions within a padded-token budget
        (packed batches: within the budget of their tokens)."""
        self.prepare(requests)
        # Tokens every row shares at its start (a few-shot prefix) are computed once per batch,
        # so only the rest counts against the budget.
        rows_of = [self.rows(q) for q in requests]
        packed, shared = self.scoring_pass([row for rows in rows_of for row in rows])
        if packed:
            sizes = [sum(len(r.tokens) for r in rows) for rows in rows_of]
            return plan_packed(sizes, self.batch_tokens)
        lengths = [max(len(r.tokens) for r in rows) - shared for rows in rows_of]
        n_rows = [len(rows) for rows in rows_of]
        order = sorted(range(len(requests)), key=lambda i: (-lengths[i], i))
        batches: list[list[int]] = []
        current: list[int] = []
        rows = 0
        longest = 0
        for index in order:
            new_rows = rows + n_rows[index]
            new_longest = max(longest, lengths[index])
            if current and (
                new_rows > MAX_BATCH_ROWS or new_rows * new_longest > self.batch_tokens
            ):
                batches.append(current)
                current, new_rows, new_longest = [], n_rows[index], lengths[index]
            current.append(index)
            rows, longest = new_rows, new_longest
        if current:
            batches.append(current)
        return batches

    # -- generation -----------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str | None:
        tokenizer = self.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            return None
        try:
            text = tokenizer.apply_chat_template(
                [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja raises its own types for templates that refuse a turn
            raise ModelError(f"the chat template of {self.spec} fails: {exc}") from None
        return str(text)

    def prompt_ids(self, request: GenerateRequest) -> list[int]:
        """The prompt's tokens, cut from the left so that prompt + budget fit the window."""
        cached = self._prompt_ids.get(request)
        if cached is not None:
            return cached
        self._load()
        room = self.window - request.max_new_tokens
        if room < 1:
            raise ModelError(
                f"max_new_tokens {request.max_new_tokens} leaves no room for a prompt in the "
                f"model's window of {self.window} tokens"
            )
        ids = self._encode(request.prompt)[-room:]
        if not ids:
            raise ModelError("an empty prompt cannot be continued")
        self._prompt_ids[request] = ids
        return ids

    def plan_generate(self, requests: Sequence[GenerateRequest]) -> list[list[int]]:
        lengths = [len(self.prompt_ids(r)) for r in requests]
        budgets = [r.max_new_tokens for r in requests]
        return plan_generate(lengths, budgets, GENERATE_TOKENS_FACTOR * self.batch_tokens)

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        self._load()
        prompts = [self.prompt_ids(r) for r in requests]
        return greedy_generate(
            self._model, self._tokenizer, prompts, requests, self._eos, self.device
        )
