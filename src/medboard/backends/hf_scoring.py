"""HFBackend's scoring passes: how a batch of questions becomes one forward pass, and the
log-probabilities read from it.

A batch is one packed row of questions one after another where the AMX attention kernel runs
(packing.py), else one padded row per question, with a prefix that every row shares computed
once through a KV cache; both give the same numbers. The last layer runs past its attention
only at the positions read (last_layer.py: the same numbers up to the rounding of products over
fewer rows), and the vocabulary projection and log-softmax only there, a few places at a time.
"""

from collections.abc import Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Any

from medboard.backends.attention import KernelAttention
from medboard.backends.base import ChoiceRequest, ChoiceResult
from medboard.backends.hf_generate import shared_prefix, with_cache
from medboard.backends.last_layer import LastLayerRows
from medboard.backends.packing import pack

# A prefix that every row of a batch shares is computed once when it is at least this long.
MIN_SHARED_PREFIX = 32
# Answer positions projected onto the vocabulary at a time (64 x 49k float32 logits: 12.6 MB).
HEAD_CHUNK = 64


@dataclass(frozen=True)
class Row:
    """One sequence the model reads, and what is scored in it."""

    tokens: tuple[int, ...]
    # (choice index, scored positions, target tokens) for each choice read from this row
    reads: tuple[tuple[int, tuple[int, ...], tuple[int, ...]], ...]


class Scoring:
    """The scoring half of HFBackend, which loads the model and sets what this reads."""

    device: str
    _model: Any
    _full_forward: bool  # the model's own forward gives logits _head cannot reproduce
    _packs: bool  # the attention kernel takes the model's attention on packed rows
    _attention: KernelAttention | None
    _last_rows: LastLayerRows | None
    _scoring: list[AbstractContextManager[Any]]  # what scoring passes switch on
    _context_tokens: dict[ChoiceRequest, int]

    def _load(self) -> None:
        raise NotImplementedError

    def rows(self, request: ChoiceRequest) -> list[Row]:
        raise NotImplementedError

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        import torch

        self._load()
        rows = [(q, row) for q, request in enumerate(requests) for row in self.rows(request)]
        packed, shared = self.scoring_pass([row for _, row in rows])
        # Where each row starts: its own row of the batch, or its offset in the packed row.
        offsets = [0] * len(rows)
        if packed:
            for r in range(1, len(rows)):
                offsets[r] = offsets[r - 1] + len(rows[r - 1][1].tokens)
        # Each read: the place (row, position) whose next-token distribution scores it, and
        # the token. Choices of one token all read the same place, which is projected once.
        places: dict[tuple[int, int], int] = {}
        read_places, targets, owners = [], [], []
        for r, (q, row) in enumerate(rows):
            for choice, pos, toks in row.reads:
                for p, t in zip(pos, toks, strict=True):
                    place = (0 if packed else r, offsets[r] + p - shared)
                    read_places.append(places.setdefault(place, len(places)))
                    targets.append(t)
                    owners.append((q, choice))
        # Without a shared prefix, the last layer runs past its attention only at the places.
        width = max((len(row.tokens) for _, row in rows), default=0)
        at = None
        if self._last_rows is not None and (packed or not shared):
            at = torch.tensor([r * width + p for r, p in places], device=self.device)
        with torch.inference_mode():
            if packed:
                out = self._forward_packed([row.tokens for _, row in rows], at)
            else:
                ids = torch.zeros((len(rows), width), dtype=torch.long)
                for r, (_, row) in enumerate(rows):
                    ids[r, : len(row.tokens)] = torch.tensor(row.tokens)
                out = self._forward(ids.to(self.device), shared, at)
            if at is None:
                out = out[tuple(torch.tensor(index) for index in zip(*places, strict=True))]
            else:
                out = out[0]
            token_lp, is_greedy = self._score_places(out, read_places, targets)
        sums: dict[tuple[int, int], float] = {}
        greedy: dict[tuple[int, int], bool] = {}
        counts: dict[tuple[int, int], int] = {}
        for owner, lp, g in zip(owners, token_lp, is_greedy, strict=True):
            sums[owner] = sums.get(owner, 0.0) + lp
            greedy[owner] = greedy.get(owner, True) and bool(g)
            counts[owner] = counts.get(owner, 0) + 1
        results = []
        for q, request in enumerate(requests):
            keys = [(q, c) for c in range(len(request.continuations))]
            results.append(
                ChoiceResult(
                    logprobs=tuple(sums[k] for k in keys),
                    greedy=tuple(greedy[k] for k in keys),
                    n_tokens=tuple(counts[k] for k in keys),
                    prompt_tokens=self._context_tokens[request],
                )
            )
        return results

    def scoring_pass(self, rows: Sequence[Row]) -> tuple[bool, int]:
        """How a batch of rows is scored: (packed, shared prefix length). A packed row where
        the rows can be packed, unless a prefix they all share, computed once, makes padded
        rows compute fewer tokens."""
        shared = self._reusable_prefix(rows)
        packed = self._packable(rows)
        if packed and shared:
            lengths = [len(row.tokens) for row in rows]
            packed = sum(lengths) < shared + len(rows) * (max(lengths) - shared)
        return packed, 0 if packed else shared

    def _score_places(
        self, chosen: Any, read_places: list[int], targets: list[int]
    ) -> tuple[list[float], list[bool]]:
        """Each read's log-probability of its target and whether the target is the greedy
        token, from the next-token distributions at the places (`chosen`: their hidden states
        or logits, [places, ...]): the output projection and log-softmax in chunks of
        HEAD_CHUNK places, so that a batch's scoring allocates the same few buffers whatever
        its size (glibc keeps freed memory, and ever larger logits buffers would each be new
        memory)."""
        import torch

        device = chosen.device
        read_t = torch.tensor(read_places, device=device)
        target_t = torch.tensor(targets, device=device)
        token_lp = torch.empty(len(targets), dtype=torch.float32, device=device)
        is_greedy = torch.empty(len(targets), dtype=torch.bool, device=device)
        for start in range(0, len(chosen), HEAD_CHUNK):
            part = chosen[start : start + HEAD_CHUNK]
            logits = (part if self._full_forward else self._head(part)).float()
            logprobs = torch.log_softmax(logits, dim=-1)
            # max's indices: argmax's first maximal index, in a quarter of its time on the CPU
            best = logprobs.max(dim=-1).indices
            mine = ((read_t >= start) & (read_t < start + HEAD_CHUNK)).nonzero()[:, 0]
            local = read_t[mine] - start
            token_lp[mine] = logprobs[local, target_t[mine]]
            is_greedy[mine] = best[local] == target_t[mine]
        return token_lp.tolist(), is_greedy.tolist()

    def _reusable_prefix(self, rows: Sequence[Row]) -> int:
        """How many leading tokens all rows share and can take from one prefix pass (0: none).

        The prefix stops before the first scored position, and is used only when it is long
        enough to pay for the extra pass and the model has no sliding window it could cross.
        """
        if len(rows) < 2:
            return 0
        first_read = min(pos[0] for row in rows for _, pos, _ in row.reads)
        shared = min(shared_prefix([row.tokens for row in rows]), first_read)
        if shared < MIN_SHARED_PREFIX:
            return 0
        config = getattr(self._model.config, "text_config", None) or self._model.config
        window = getattr(config, "sliding_window", None)
        if window and max(len(row.tokens) for row in rows) > window:
            return 0
        return shared

    def _packable(self, rows: Sequence[Row]) -> bool:
        """Whether these rows can go through one packed scoring pass: the kernel takes the
        model's attention (sliding windows included)."""
        return self._packs and bool(rows)

    def _forward_packed(self, sequences: Sequence[Sequence[int]], at: Any = None) -> Any:
        """Last hidden states (or logits) [1, positions, ...] of the sequences one after another
        in one row, each attending only to itself (packing.pack: the row padded to a multiple
        of PACK_MULTIPLE tokens); [1, len(at), ...] at positions `at` when given."""
        ids, positions, starts = pack(sequences)
        assert self._attention is not None  # _packable
        self._attention.packed = True
        try:
            return self._scoring_forward(
                at,
                input_ids=ids.to(self.device),
                position_ids=positions.to(self.device),
                medboard_segments=starts,
            )
        finally:
            self._attention.packed = False

    def _scoring_forward(self, at: Any, **inputs: Any) -> Any:
        """A forward pass with the scoring switches on; with `at` (positions flattened over the
        batch), the last layer past its attention only there (LastLayerRows)."""
        model = self._model if self._full_forward else self._model.base_model
        try:
            with ExitStack() as stack:
                for switch in self._scoring:
                    stack.enter_context(switch)
                if self._last_rows is not None:
                    self._last_rows.rows = at
                out = model(**inputs, use_cache=False)
        finally:
            if self._last_rows is not None:
                self._last_rows.rows = None
        return out.logits if self._full_forward else out.last_hidden_state

    def _forward(self, ids: Any, shared: int, at: Any = None) -> Any:
        """Logits (full forward) or last hidden states for the positions from `shared` on
        ([rows, positions, ...]; [1, len(at), ...] at positions `at` when given, which needs
        shared == 0).

        With a shared prefix, the prefix runs once with a KV cache that every row then reads:
        the same attention over the same tokens, without recomputing the prefix per row.
        """
        model = self._model if self._full_forward else self._model.base_model
        if not shared:
            return self._scoring_forward(at, input_ids=ids)
        from transformers import DynamicCache

        cache = DynamicCache(config=self._model.config)
        model(input_ids=ids[:1, :shared], use_cache=True, **with_cache(model, cache))
        cache.batch_repeat_interleave(ids.shape[0])
        out = model(input_ids=ids[:, shared:], use_cache=True, **with_cache(model, cache))
        return out.logits if self._full_forward else out.last_hidden_state

    def _head(self, hidden: Any) -> Any:
        """The output projection (and Gemma's final soft-capping, when the config has it)."""
        import torch

        logits = self._model.get_output_embeddings()(hidden)
        config = getattr(self._model.config, "text_config", None) or self._model.config
        cap = getattr(config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits
