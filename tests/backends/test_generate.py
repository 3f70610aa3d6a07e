"""Batched greedy generation against transformers' own `generate`, one prompt at a time."""

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from medboard.backends import hf_generate
from medboard.backends.base import GenerateRequest
from medboard.backends.fake import FakeBackend
from medboard.backends.hf import HFBackend
from medboard.backends.hf_generate import plan_generate, shared_prefix

PROMPTS = [
    "Question: Which nerve innervates the diaphragm?\nA. Phrenic\nB. Vagus\nAnswer:",
    "Abstract: x",
    "The following are",
    "Choices:\nC. Radial\nD. Ulnar\nThe Goldman-Hodgkin-Katz equation. The Nernst",
    "Abstract: Patients were randomized.\nQuestion: Does it help?\nAnswer:",
    "A",
]


@pytest.fixture(scope="module")
def backend(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HFBackend]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDBOARD_HOME", str(tmp_path_factory.mktemp("home")))
        backend = HFBackend(str(tiny_model))
        backend.load()
        yield backend


def reference(backend: HFBackend, request: GenerateRequest) -> list[int]:
    """transformers' greedy decoding of one prompt, alone (no padding, no batch)."""
    ids = torch.tensor([backend.prompt_ids(request)])
    with torch.inference_mode():
        out = backend.model.generate(ids, max_new_tokens=request.max_new_tokens, do_sample=False)
    return out[0, ids.shape[1] :].tolist()


def test_batched_greedy_equals_generate_per_prompt(backend: HFBackend) -> None:
    # mixed budgets: short sequences finish and leave the batch while long ones go on
    requests = [GenerateRequest(p, 24 if i % 2 else 3) for i, p in enumerate(PROMPTS)]
    results = backend.generate(requests)
    reasons = set()
    for request, result in zip(requests, results, strict=True):
        expected = reference(backend, request)
        assert list(result.tokens) == expected
        assert result.n_new_tokens == len(expected)
        assert result.n_prompt_tokens == len(backend.prompt_ids(request))
        text = backend.tokenizer.decode(expected, skip_special_tokens=True)
        assert result.text == text
        reasons.add(result.stopped_by)
    assert reasons == {"eos", "length"}  # both ways of ending are exercised


def test_shared_prefix_is_read_once_with_the_same_outputs(
    backend: HFBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    instruction = "The following are multiple choice questions (with answers) about anatomy.\n\n"
    requests = [GenerateRequest(instruction + p, 16) for p in PROMPTS]
    prompts = [backend.prompt_ids(r) for r in requests]
    assert shared_prefix(prompts) >= hf_generate.MIN_SHARED_PREFIX
    shared = backend.generate(requests)
    monkeypatch.setattr(hf_generate, "MIN_SHARED_PREFIX", 10_000)
    assert backend.generate(requests) == shared
    for request, result in zip(requests, shared, strict=True):
        assert list(result.tokens) == reference(backend, request)


def test_padded_prefill_for_caches_that_cannot_be_filled_by_row(
    backend: HFBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import DynamicCache

    requests = [GenerateRequest(p, 12) for p in PROMPTS]
    by_row = backend.generate(requests)
    monkeypatch.setattr(
        hf_generate, "preallocated_cache", lambda model, n: DynamicCache(config=model.config)
    )
    assert backend.generate(requests) == by_row


def test_shared_prefix() -> None:
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3]]) == 2  # each keeps a token
    assert shared_prefix([[1, 2], [3, 4]]) == 0
    assert shared_prefix([[1, 2, 3]]) == 2


def test_eos_ends_a_sequence_and_counts_as_a_token(backend: HFBackend) -> None:
    results = backend.generate([GenerateRequest(p, 40) for p in PROMPTS])
    ended = [r for r in results if r.stopped_by == "eos"]
    assert ended
    for result in ended:
        assert result.tokens[-1] in backend._eos
        assert result.n_new_tokens < 40


def test_batch_composition_does_not_change_outputs(backend: HFBackend) -> None:
    requests = [GenerateRequest(p, 12) for p in PROMPTS]
    together = backend.generate(requests)
    alone = [backend.generate([r])[0] for r in requests]
    assert together == alone


def test_stop_string_cuts_the_text_and_ends_early(backend: HFBackend) -> None:
    free = backend.generate([GenerateRequest(PROMPTS[3], 20)])[0]
    assert free.stopped_by == "length" and len(free.text) > 6
    stop = free.text[3:5]  # a stop string that appears part way through the free text
    cut = backend.generate([GenerateRequest(PROMPTS[3], 20, stop=(stop, "never there"))])[0]
    assert cut.stopped_by == "stop"
    assert cut.text == free.text[: free.text.index(stop)]
    assert cut.tokens == free.tokens[: cut.n_new_tokens]
    assert cut.n_new_tokens < free.n_new_tokens


def test_prompt_is_cut_from_the_left_to_leave_room_for_the_answer(backend: HFBackend) -> None:
    long_prompt = "Question: Which nerve? " * 200
    request = GenerateRequest(long_prompt, 10)
    ids = backend.prompt_ids(request)
    assert len(ids) == backend.window - 10
    assert ids == backend._encode(long_prompt)[-len(ids) :]
    assert backend.generate([request])[0].n_new_tokens <= 10


def test_plan_generate_sorts_by_prompt_length_within_budget(backend: HFBackend) -> None:
    requests = [GenerateRequest(p, 8) for p in PROMPTS]
    plan = backend.plan_generate(requests)
    assert plan == backend.plan_generate(requests)
    assert sorted(i for batch in plan for i in batch) == list(range(len(PROMPTS)))
    lengths = [len(backend.prompt_ids(requests[i])) for batch in plan for i in batch]
    assert lengths == sorted(lengths, reverse=True)


def test_plan_generate_limits() -> None:
    # rows x (longest prompt + largest budget) within max_tokens, at most max_rows rows
    plan = plan_generate([10, 30, 20, 20, 5], [10, 10, 10, 10, 10], max_tokens=90, max_rows=2)
    assert plan == [[1, 2], [3, 0], [4]]
    assert plan_generate([50, 50], [10, 100], max_tokens=100) == [[0], [1]]
    assert plan_generate([], [], max_tokens=10) == []


def test_chat_prompt_and_bare_token_counts(backend: HFBackend) -> None:
    messages = [{"role": "user", "content": "Which nerve?"}]
    assert backend.tokenizer.chat_template is None
    assert backend.chat_prompt(messages) is None
    backend.tokenizer.chat_template = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    try:
        assert backend.chat_prompt(messages) == "<user>Which nerve?<assistant>"
    finally:
        backend.tokenizer.chat_template = None
    bare = backend.tokenizer.encode("Phrenic", add_special_tokens=False)
    assert backend.count_tokens("Phrenic", add_special_tokens=False) == len(bare)


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GenerateRequest("x", 0)


def test_fake_generation_is_deterministic_and_honours_budget_and_stops() -> None:
    fake = FakeBackend("batch=2")
    prompts = [f"Question: q{i}?\nA. a\nB. b\nC. c\nAnswer:" for i in range(12)]
    requests = [GenerateRequest(p, 10) for p in prompts]
    first = fake.generate(requests)
    assert first == FakeBackend().generate(requests)
    assert fake.plan_generate(requests) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    assert {r.text for r in first} & {"A", "B", "C", "(A)", "(B)", "(C)"}
    short = fake.generate([GenerateRequest("Question: q?\nA. a\nB. b", 1)])[0]
    assert len(short.text.split()) <= 1
    assert FakeBackend("bias=B").generate(requests[:1])[0].text == "B"
    labels = fake.generate([GenerateRequest("Answer yes, no, or maybe. Is it?", 5)])[0]
    assert any(word in labels.text.lower() for word in ("yes", "no", "maybe", "cannot"))
    stopped = FakeBackend("bias=AxB").generate([GenerateRequest("q", 5, stop=("x",))])[0]
    assert (stopped.text, stopped.stopped_by) == ("A", "stop")


def test_fake_chat_template() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    assert FakeBackend().chat_prompt(messages) is None
    assert FakeBackend("chat=1").chat_prompt(messages) == "<|user|>\nHi\n<|assistant|>\n"


class OldForward:
    def forward(self, input_ids: object, past_key_values: object = None) -> None: ...


class NewForward:
    def forward(self, input_ids: object, cache: object = None) -> None: ...


def test_cache_goes_by_the_name_the_model_knows() -> None:
    # transformers 5.24 renamed past_key_values to cache; both generations of models work
    assert hf_generate.with_cache(OldForward(), "kv") == {"past_key_values": "kv"}
    assert hf_generate.with_cache(NewForward(), "kv") == {"cache": "kv"}


def test_generation_uses_no_deprecated_keyword(backend: HFBackend) -> None:
    request = GenerateRequest(PROMPTS[0] * 3, max_new_tokens=3)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*")
        backend.generate([request, GenerateRequest(PROMPTS[0] * 3 + " B", max_new_tokens=3)])
