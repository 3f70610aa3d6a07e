"""The transformers backend against an independent brute-force computation on a tiny model."""

from pathlib import Path

import pytest
import torch

from medboard.backends import ChoiceRequest, create_backend
from medboard.backends.hf import HFBackend, build_rows
from medboard.backends.last_layer import LastLayerRows
from medboard.errors import ModelError

REQUESTS = [
    ChoiceRequest("Question: Which nerve innervates the diaphragm?\nAnswer:", (" A", " B", " C")),
    ChoiceRequest("Abstract: Patients were randomized.\nAnswer:", (" yes", " no", " maybe")),
    ChoiceRequest(
        "Question: equilibrium potential?\nAnswer:",
        (" The Nernst equation.", " The Goldman-Hodgkin-Katz equation.", " Ohm"),
    ),
    ChoiceRequest("Trailing space here: ", ("A", "B")),
]


def brute_force(model_dir: Path, request: ChoiceRequest) -> list[float]:
    """lm-eval's recipe, written out: full forward on context+continuation, one per choice."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    context = request.context.rstrip()
    spaces = request.context[len(context) :]
    scores = []
    for continuation in request.continuations:
        whole = tokenizer.encode(context + spaces + continuation)
        context_enc = tokenizer.encode(context)
        cont_enc = whole[len(context_enc) :]
        inputs = torch.tensor([(context_enc + cont_enc)[:-1]])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(inputs).logits[0].float(), dim=-1)
        positions = range(inputs.shape[1] - len(cont_enc), inputs.shape[1])
        scores.append(sum(logprobs[p, t].item() for p, t in zip(positions, cont_enc, strict=True)))
    return scores


def test_loglikelihood_matches_brute_force(tiny_model: Path, medboard_home: Path) -> None:
    backend = create_backend(str(tiny_model))
    results = backend.loglikelihood(REQUESTS)
    for request, result in zip(REQUESTS, results, strict=True):
        expected = brute_force(tiny_model, request)
        assert result.logprobs == pytest.approx(expected, abs=1e-4)
        assert len(result.greedy) == len(request.continuations)
    # multi-token continuations are summed over their tokens
    assert results[2].n_tokens[1] > 1


def test_batching_does_not_change_numbers(tiny_model: Path, medboard_home: Path) -> None:
    one_by_one = HFBackend(str(tiny_model), batch_tokens=1)
    together = HFBackend(str(tiny_model), batch_tokens=100_000)
    assert len(one_by_one.plan(REQUESTS)) == len(REQUESTS)
    assert len(together.plan(REQUESTS)) == 1
    single = [r for batch in one_by_one.plan(REQUESTS) for r in batch]
    a = {i: one_by_one.loglikelihood([REQUESTS[i]])[0].logprobs for i in single}
    b = together.loglikelihood(REQUESTS)
    # float32 kernels sum in an order that can depend on the batch's shape: within 1e-5 on
    # AVX-512 machines, up to 6.4e-5 on an AVX2 EPYC (log-likelihoods of -9.6 to -25.7); the
    # parity bound against the reference is 1e-3.
    for i, result in enumerate(b):
        assert result.logprobs == pytest.approx(a[i], abs=2e-4)


def test_plan_is_longest_first_and_deterministic(tiny_model: Path, medboard_home: Path) -> None:
    backend = HFBackend(str(tiny_model), batch_tokens=1)
    plan = backend.plan(REQUESTS)
    assert plan == backend.plan(REQUESTS)
    lengths = [max(len(r.tokens) for r in backend.rows(REQUESTS[b[0]])) for b in plan]
    assert lengths == sorted(lengths, reverse=True)


def test_wrong_head_falls_back_to_full_forward(
    tiny_model: Path, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = HFBackend(str(tiny_model))
    monkeypatch.setattr(HFBackend, "_head", lambda self, hidden: 0 * hidden[..., :1])
    result = backend.loglikelihood(REQUESTS[:1])[0]
    assert backend._full_forward
    assert result.logprobs == pytest.approx(brute_force(tiny_model, REQUESTS[0]), abs=1e-4)


def test_load_time_checks_are_answered_once_per_machine(
    tiny_model: Path, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    head, rows = HFBackend._head_matches_forward, LastLayerRows.matches
    monkeypatch.setattr(
        HFBackend, "_head_matches_forward", lambda self: asked.append("head") or head(self)
    )
    monkeypatch.setattr(
        LastLayerRows, "matches", lambda self, *a: asked.append("rows") or rows(self, *a)
    )
    first = HFBackend(str(tiny_model))
    expected = first.loglikelihood(REQUESTS)
    assert asked == ["head", "rows"]
    second = HFBackend(str(tiny_model))  # as a later process on this machine would
    assert second.loglikelihood(REQUESTS) == expected
    assert asked == ["head", "rows"]
    assert not second._full_forward and second._last_rows is not None
    HFBackend(str(tiny_model), dtype="bfloat16", compile_mode="off").load()  # another identity
    assert asked == ["head", "rows"] * 2


def test_build_rows_truncates_from_the_left() -> None:
    rows = build_rows(list(range(10)), [[100], [101], [200, 201, 202]], window=6)
    single, multi = rows
    assert single.tokens == tuple(range(4, 10))  # (ctx + [t])[-7:][:-1]
    assert [read[0] for read in single.reads] == [0, 1]
    assert multi.tokens == (6, 7, 8, 9, 200, 201)
    assert multi.reads == ((2, (3, 4, 5), (200, 201, 202)),)


def test_identity_hashes_the_weights(tiny_model: Path, medboard_home: Path) -> None:
    identity = create_backend(str(tiny_model), dtype="bfloat16").identity()
    assert identity["revision"].startswith("sha256:")
    assert identity["dtype"] == "bfloat16"


def test_bfloat16_close_to_float32(tiny_model: Path, medboard_home: Path) -> None:
    f32 = create_backend(str(tiny_model)).loglikelihood(REQUESTS[:2])
    bf16 = create_backend(str(tiny_model), dtype="bfloat16").loglikelihood(REQUESTS[:2])
    for a, b in zip(f32, bf16, strict=True):
        assert b.logprobs == pytest.approx(a.logprobs, rel=0.05)


def test_unknown_dtype(tiny_model: Path, medboard_home: Path) -> None:
    with pytest.raises(ModelError, match="unknown dtype 'int3'"):
        create_backend(str(tiny_model), dtype="int3")


FEWSHOT_PREFIX = "".join(
    f"Question: Which nerve supplies muscle {i}?\nA. ulnar\nB. median\nAnswer: {'AB'[i % 2]}\n\n"
    for i in range(5)
)
FEWSHOT_REQUESTS = [
    ChoiceRequest(FEWSHOT_PREFIX + f"Question: {q}\nA. yes\nB. no\nAnswer:", (" A", " B"))
    for q in ("Is the liver on the right?", "Does the heart beat?", "Is bone living tissue?")
] + [ChoiceRequest(FEWSHOT_PREFIX + "Question: Name the bone.\nAnswer:", (" femur", " tibia"))]


def test_plan_counts_a_shared_prefix_once(tiny_model: Path, medboard_home: Path) -> None:
    backend = HFBackend(str(tiny_model))
    rows = [row for r in FEWSHOT_REQUESTS for row in backend.rows(r)]
    longest = max(len(row.tokens) for row in rows)
    shared = backend._reusable_prefix(rows)
    budget = len(rows) * (longest - shared)  # fits only when the prefix counts once
    assert budget < len(rows) * longest
    assert len(HFBackend(str(tiny_model), batch_tokens=budget).plan(FEWSHOT_REQUESTS)) == 1


def test_batched_tokenization_gives_each_text_its_own_encoding(
    tiny_model: Path, medboard_home: Path
) -> None:
    backend = HFBackend(str(tiny_model))
    tokenizer = backend.tokenizer
    bos = tokenizer.decode(tokenizer.bos_token_id or tokenizer.eos_token_id)
    requests = [*REQUESTS, ChoiceRequest(bos + "Question: already marked?\nAnswer:", (" yes",))]
    backend.prepare(requests)

    def encode(text: str) -> list[int]:  # lm-eval's tok_encode, one text at a time
        return tokenizer.encode(text, add_special_tokens=not text.startswith(bos))

    for request in requests:  # lm-eval's _encode_pair
        context = request.context.rstrip()
        spaces = request.context[len(context) :]
        context_enc = encode(context)
        conts = [encode(context + spaces + c)[len(context_enc) :] for c in request.continuations]
        assert backend.rows(request) == build_rows(context_enc, conts, backend.window)
    assert backend.rows(requests[-1])[0].tokens.count(tokenizer.bos_token_id) <= 1
    with pytest.raises(ModelError, match="an empty context"):
        backend.prepare([ChoiceRequest("", (" A",))])
    with pytest.raises(ModelError, match="encodes to no tokens"):
        backend.prepare([ChoiceRequest("Question:", ("",))])
