"""Batched greedy decoding for a transformers causal LM, equal to decoding one prompt at a time.

Each prompt is read alone (after the prefix all prompts share, read once) and its keys and values
are placed in its row of one KV cache, right-aligned; then each step feeds one token per
unfinished sequence through that cache. Three things make the batch decode as each prompt would
alone: the attention mask hides the padding left of shorter prompts, position ids count only real
tokens (a sequence padded by 5 is at position n, not n + 5), and a sequence stops on its own
end-of-sequence token, stop string or budget. A finished sequence leaves the batch (its rows of the
cache are dropped once a quarter of the batch has finished), so a batch costs about what its
unfinished sequences cost, not its longest answer. The cache is preallocated for the whole decode:
transformers' DynamicCache concatenates every step, which copies the whole cache (measured: 73%
of a 64-row decode step of SmolLM2-135M).

Greedy decoding is an argmax: in float32 the tokens equal `model.generate(do_sample=False)` run
per prompt (tests/backends/test_generate.py and bench/generation.py check it); only a near-tie
between two tokens, which a different batch shape can round the other way, could differ.
Sampling settings and logits processors in a model's generation_config (repetition penalty and
the like) are not applied: every protocol here decodes greedily by definition.
"""

import functools
import inspect
from collections.abc import Sequence
from typing import Any

from medboard.backends.base import GenerateRequest, GenerateResult, StopReason

MAX_GENERATE_ROWS = 64
# Finished sequences leave the batch when they are this share of it: dropping rows copies the
# whole cache, which costs as much as a decoding step of many rows, so rows leave in groups.
DROP_SHARE = 0.25
# Prompts that start with the same tokens (an instruction, a chat template's system turn) read
# those tokens once when they are at least this many.
MIN_SHARED_PREFIX = 16


def eos_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The tokens that end a sequence, as `model.generate` reads them (generation config first)."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return frozenset()
    return frozenset([eos] if isinstance(eos, int) else eos)


def plan_generate(
    prompt_lengths: Sequence[int],
    budgets: Sequence[int],
    max_tokens: int,
    max_rows: int = MAX_GENERATE_ROWS,
) -> list[list[int]]:
    """Batches of request indices, longest prompt first, each within a padded-token budget.

    A batch holds at most `max_rows` sequences and rows x (longest prompt + largest budget) at
    most `max_tokens`, the size of its KV cache at the end. Sorting by prompt length keeps the
    left padding small; ties keep request order, so the plan is deterministic.
    """
    order = sorted(range(len(prompt_lengths)), key=lambda i: (-prompt_lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    widest = 0
    for index in order:
        new_longest = max(longest, prompt_lengths[index])
        new_widest = max(widest, budgets[index])
        rows = len(current) + 1
        if current and (rows > max_rows or rows * (new_longest + new_widest) > max_tokens):
            batches.append(current)
            current, new_longest, new_widest = [], prompt_lengths[index], budgets[index]
        current.append(index)
        longest, widest = new_longest, new_widest
    if current:
        batches.append(current)
    return batches


def with_cache(model: Any, cache: Any) -> dict[str, Any]:
    """The keyword that hands `cache` to the model's forward pass.

    transformers 5.24 renamed `past_key_values` to `cache` (the old name goes in 5.40); older
    releases know only `past_key_values`.
    """
    return {_cache_keyword(type(model)): cache}


@functools.cache
def _cache_keyword(model_class: type) -> str:
    names = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in names else "past_key_values"


def preallocated_cache(model: Any, capacity: int) -> Any:
    """A DynamicCache whose full-attention layers write into buffers of `capacity` positions.

    Other layer kinds (sliding windows, linear attention) keep transformers' own classes.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        """Keys and values written in place; `keys`/`values` are views of the filled part."""

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.is_initialized:
                self._allocate(key_states, value_states, key_states.shape[0])
            end = self.length + key_states.shape[-2]
            if end > self.buffers[0].shape[-2]:  # only if a caller outgrows its capacity
                self.buffers = [_grown(b, 2 * end) for b in self.buffers]
            self.buffers[0][..., self.length : end, :] = key_states
            self.buffers[1][..., self.length : end, :] = value_states
            self.length = end
            self._views()
            return self.keys, self.values

        def place(
            self, rows: slice, key_states: Any, value_states: Any, batch: int, width: int
        ) -> None:
            """Put a prefilled group of rows in, right-aligned at `width` positions."""
            if not self.is_initialized:
                self._allocate(key_states, value_states, batch)
            self.length = width
            start = width - key_states.shape[-2]
            self.buffers[0][rows, :, start:width, :] = key_states
            self.buffers[1][rows, :, start:width, :] = value_states
            self._views()

        def _allocate(self, key_states: Any, value_states: Any, batch: int) -> None:
            self.lazy_initialization(key_states, value_states)
            # zeros, not empty: the padding left of a short prompt is masked, and a masked
            # position's value still enters the weighted sum (times zero; garbage could be NaN)
            self.buffers = [
                t.new_zeros((batch, *t.shape[1:-2], capacity, t.shape[-1]))
                for t in (key_states, value_states)
            ]
            self.length = 0

        def _views(self) -> None:
            self.keys = self.buffers[0][..., : self.length, :]
            self.values = self.buffers[1][..., : self.length, :]

        def batch_select_indices(self, indices: Any) -> None:
            if self.is_initialized:
                self.buffers = [b[indices, ...] for b in self.buffers]
                self._views()

    cache = DynamicCache(config=model.config)
    cache.layers = [
        PreallocatedLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache


def _grown(buffer: Any, capacity: int) -> Any:
    grown = buffer.new_zeros((*buffer.shape[:-2], capacity, buffer.shape[-1]))
    grown[..., : buffer.shape[-2], :] = buffer
    return grown


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all prompts share (each keeps at least its last token)."""
    shortest = min(len(p) for p in prompts)
    first = prompts[0]
    n = 0
    while n < shortest - 1 and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


class _Sequence:
    """One request being decoded: its new tokens, and where its stop strings are searched."""

    def __init__(self, request: GenerateRequest, n_prompt: int) -> None:
        self.request = request
        self.n_prompt = n_prompt
        self.tokens: list[int] = []
        self.searched = 0  # characters of the decoded text already searched for stop strings
        self.longest_stop = max((len(s) for s in request.stop), default=0)

    def stop_at(self, text: str) -> int | None:
        """Where the first stop string starts in `text`, if one has appeared."""
        # A new token can complete a stop string that began up to len(stop) - 1 characters back;
        # a few more cover a multi-byte character that the previous decode showed as U+FFFD.
        start = max(0, self.searched - self.longest_stop - 4)
        self.searched = len(text)
        found = [p for p in (text.find(s, start) for s in self.request.stop if s) if p >= 0]
        return min(found) if found else None


def greedy_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    requests: Sequence[GenerateRequest],
    eos: frozenset[int],
    device: str = "cpu",
) -> list[GenerateResult]:
    """Decode every request of one batch greedily; results in request order."""
    import torch

    # Batch rows are the requests, longest prompt first; `active[row]` is a row's request.
    active = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    lengths = [len(prompts[i]) for i in active]
    width = lengths[0]
    sequences = [_Sequence(r, len(p)) for r, p in zip(requests, prompts, strict=True)]
    results: list[GenerateResult | None] = [None] * len(prompts)
    cache = preallocated_cache(model, width + max(r.max_new_tokens for r in requests))
    mask = torch.zeros((len(active), width), dtype=torch.long, device=device)
    for row, length in enumerate(lengths):
        mask[row, width - length :] = 1
    with torch.inference_mode():
        rows = [prompts[i] for i in active]
        if all(hasattr(layer, "place") for layer in cache.layers):
            logits = _prefill_rows(model, rows, cache, width, device)
        else:  # sliding-window or other layers: one padded pass
            logits = _prefill_padded(model, rows, tokenizer, eos, cache, device)
        next_position = torch.tensor(lengths, device=device)[:, None]
        while True:
            chosen = logits.float().argmax(dim=-1)
            for row, token in enumerate(chosen.tolist()):
                index = active[row]
                if results[index] is None:  # a finished row still in the batch is skipped
                    results[index] = _step(sequences[index], token, eos, tokenizer)
            keep = [row for row, index in enumerate(active) if results[index] is None]
            if not keep:
                break
            if len(active) - len(keep) >= DROP_SHARE * len(active):
                kept = torch.tensor(keep, device=chosen.device)
                cache.batch_select_indices(kept)
                chosen, mask, next_position = chosen[kept], mask[kept], next_position[kept]
                active = [active[row] for row in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            logits = model(
                input_ids=chosen[:, None],
                attention_mask=mask,
                position_ids=next_position,
                use_cache=True,
                **with_cache(model, cache),
            ).logits[:, -1]
            next_position = next_position + 1
    return [r for r in results if r is not None]


def _prefill_rows(
    model: Any, prompts: Sequence[Sequence[int]], cache: Any, width: int, device: str
) -> Any:
    """Read each prompt alone, after their shared prefix read once; next-token logits.

    Alone, a prompt needs no padding and no mask, and its pass has the very shapes of
    `model.generate` on that prompt; a forward pass of a few hundred tokens already runs the
    matrix products at full speed on a CPU, so reading prompts together would only add padding.
    Each prompt's keys and values are then placed in its row of `cache`, right-aligned at
    `width` (to their left, zeros that the attention mask hides).
    """
    import torch
    from transformers import DynamicCache

    shared = shared_prefix(prompts)
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    prefix = None
    if shared:
        prefix = DynamicCache(config=model.config)
        ids = torch.tensor([prompts[0][:shared]], device=device)
        model(input_ids=ids, **with_cache(model, prefix))
    firsts = []
    for row, prompt in enumerate(prompts):
        own = DynamicCache(config=model.config)
        if prefix is not None:  # a copy: the model appends to the layers it is given
            own = DynamicCache(
                ddp_cache_data=[(layer.keys, layer.values) for layer in prefix.layers],
                config=model.config,
            )
        ids = torch.tensor([prompt[shared:]], device=device)
        positions = torch.arange(shared, len(prompt), device=device)[None]
        firsts.append(
            model(
                input_ids=ids,
                position_ids=positions,
                use_cache=True,
                **with_cache(model, own),
                logits_to_keep=1,
            ).logits[:, -1]
        )
        for layer, filled in zip(cache.layers, own.layers, strict=True):
            layer.place(slice(row, row + 1), filled.keys, filled.values, len(prompts), width)
    return torch.cat(firsts)


def _prefill_padded(
    model: Any,
    prompts: Sequence[Sequence[int]],
    tokenizer: Any,
    eos: frozenset[int],
    cache: Any,
    device: str,
) -> Any:
    """Read all prompts in one pass, left-padded to the longest (caches that cannot be filled
    row by row); next-token logits."""
    import torch

    pad = tokenizer.pad_token_id
    if pad is None:
        pad = min(eos) if eos else 0
    width = len(prompts[0])
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    # As `model.generate` does: real tokens count from 0, padding gets a harmless position 1.
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    return model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        use_cache=True,
        **with_cache(model, cache),
        logits_to_keep=1,
    ).logits[:, -1]


def _step(
    sequence: _Sequence, token: int, eos: frozenset[int], tokenizer: Any
) -> GenerateResult | None:
    """Take one token; the result when the sequence is finished, else None."""
    request = sequence.request
    reason: StopReason | None = None
    cut: int | None = None
    if token in eos:
        reason = "eos"
    else:
        sequence.tokens.append(token)
        if request.stop:
            cut = sequence.stop_at(tokenizer.decode(sequence.tokens, skip_special_tokens=True))
            if cut is not None:
                reason = "stop"
        if reason is None and len(sequence.tokens) >= request.max_new_tokens:
            reason = "length"
    if reason is None:
        return None
    produced = tuple(sequence.tokens) + ((token,) if reason == "eos" else ())
    # Decoded with the end-of-sequence token, as `tokenizer.decode(generate(...)[n:],
    # skip_special_tokens=True)` does: it vanishes when it is a special token, as it should be.
    text = tokenizer.decode(list(produced), skip_special_tokens=True)
    return GenerateResult(
        text=text if cut is None else text[:cut],
        n_prompt_tokens=sequence.n_prompt,
        n_new_tokens=len(produced),
        stopped_by=reason,
        tokens=produced,
    )
