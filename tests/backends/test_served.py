"""The openai backend against a test server (openai_stub.py): the numbers it reads, what it
costs, and each bad answer a server can give as one line. Real servers (llama.cpp, vLLM) are in
test_served_servers.py."""

import math
import socket
from collections.abc import Iterator

import pytest

from medboard.backends import ChoiceRequest, GenerateRequest, registry
from medboard.backends.served import CHAT, ServedBackend
from medboard.errors import ModelError
from tests.backends.openai_stub import MODEL, StubServer, logprobs_after


@pytest.fixture()
def stub() -> Iterator[StubServer]:
    server = StubServer().start()
    yield server
    server.stop()


def backend(url: str, **args: object) -> ServedBackend:
    spec = registry.resolve(f"openai:{MODEL}", {"base_url": url, "retries": 1, **args})
    made = registry.create(spec)
    assert isinstance(made, ServedBackend)
    made.client = type(made.client)(**{**made.client.__dict__, "backoff": 0.01})
    return made


def expected(context: str, continuation: str) -> float:
    data = (context + continuation).encode()
    start = len(context.encode())
    return sum(logprobs_after(data[p - 1])[data[p]] for p in range(start, len(data)))


def test_identity_and_log_likelihoods(stub: StubServer) -> None:
    model = backend(stub.url)
    assert model.identity() == {
        "model": "openai:stub",
        "revision": "served:openai-compatible-stub:stub",
        "dtype": "served",
        "backend": "openai",
        "server": "openai-compatible stub",
        "served_model": "stub",
    }
    assert model.supports == {"loglikelihood", "generate"}
    requests = [
        ChoiceRequest("Question: Is it?\nAnswer:", (" yes", " no", " maybe")),
        ChoiceRequest("Pick one:", ("A", "B", "C", "D")),  # one byte each: one request
    ]
    results = model.loglikelihood(requests)
    for request, result in zip(requests, results, strict=True):
        for continuation, value in zip(request.continuations, result.logprobs, strict=True):
            assert value == pytest.approx(expected(request.context, continuation), abs=1e-9)
    letters = results[1]
    best = max(range(4), key=lambda i: letters.logprobs[i])
    top = max(logprobs_after(ord(":")))
    assert letters.greedy[best] == (letters.logprobs[best] == pytest.approx(top))


def test_one_token_choices_cost_one_request_unless_one_is_not_in_the_top(
    stub: StubServer,
) -> None:
    model = backend(stub.url, top_logprobs=256)
    model.identity()  # the server probed first
    stub.requests.clear()
    model.loglikelihood([ChoiceRequest("Pick one:", ("A", "B", "C", "D"))])
    completions = [b for path, b in stub.requests if path == "/v1/completions"]
    assert len(completions) == 1 and not completions[0].get("echo")
    narrow = backend(stub.url, top_logprobs=1)  # at most the top token: the rest asked alone
    narrow.identity()
    stub.requests.clear()
    result = narrow.loglikelihood([ChoiceRequest("Pick one:", ("A", "B", "C", "D"))])[0]
    completions = [b for path, b in stub.requests if path == "/v1/completions"]
    assert len(completions) >= 4 and sum(bool(b.get("echo")) for b in completions) >= 3
    assert result.logprobs == pytest.approx([expected("Pick one:", c) for c in "ABCD"])


def test_generation_through_completions_and_chat(stub: StubServer) -> None:
    model = backend(stub.url)
    plain, chat = model.generate(
        [
            GenerateRequest("Question: Is it?\nAnswer:", max_new_tokens=1),
            GenerateRequest(model.chat_prompt([{"role": "user", "content": "Hi"}]) or "", 8),
        ]
    )
    assert plain.text == chr(max(range(256), key=lambda b: logprobs_after(ord(":"))[b]))
    assert plain.stopped_by == "length"
    assert chat.text == "The answ" and (model.chat_prompt([]) or "").startswith(CHAT)
    assert [p for p, _ in stub.requests if p.endswith("chat/completions")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_one_line() -> None:
    """Named with what to check: it read as a fault of medboard's."""
    port = _free_port()
    model = backend(f"http://127.0.0.1:{port}/v1")
    expected = (
        rf"^http://127.0.0.1:{port}/v1/models failed 2 time\(s\) in \d+ s, last: .*Connection.*"
        rf" \(nothing listens at http://127.0.0.1:{port}: is the server running, and is base_url "
        r"right\?\)$"
    )
    with pytest.raises(ModelError, match=expected):
        model.identity()
    unknown = backend("http://no-such-host.invalid:8000/v1")
    with pytest.raises(ModelError, match=r"the host of http://no-such-host.invalid:8000 is not"):
        unknown.identity()


def test_a_model_the_server_does_not_serve(stub: StubServer) -> None:
    model = registry.create(registry.resolve("openai:gpt-9", {"base_url": stub.url}))
    with pytest.raises(ModelError, match=r"does not serve 'gpt-9' \(it serves: stub\)"):
        model.identity()


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("garbage", r"/v1/completions answered no JSON: '<html>Bad Gateway"),
        ("close", r"/v1/completions failed 2 time\(s\) in \d+ s, last: "),
    ],
)
def test_garbage_and_a_connection_closed_mid_answer(mode: str, message: str) -> None:
    server = StubServer(mode).start()
    try:
        with pytest.raises(ModelError, match=message):
            backend(server.url).loglikelihood([ChoiceRequest("Q:", (" A", " B"))])
    finally:
        server.stop()


def test_throttling_is_retried_with_backoff() -> None:
    server = StubServer("throttle").start()
    try:
        model = backend(server.url, retries=3)
        result = model.loglikelihood([ChoiceRequest("Q:", ("A", "B"))])[0]
        assert result.logprobs == pytest.approx([expected("Q:", c) for c in "AB"])
        assert sum(p == "/v1/completions" for p, _ in server.requests) >= 3
    finally:
        server.stop()


def test_a_server_without_prompt_log_probabilities_generates_only() -> None:
    server = StubServer("chat-only").start()
    try:
        model = backend(server.url)
        assert model.supports == {"generate"}
        with pytest.raises(ModelError, match="gives no prompt log-probabilities .* generative"):
            model.loglikelihood([ChoiceRequest("Q:", (" A", " B"))])
        assert model.generate([GenerateRequest("Q:", 1)])[0].text
    finally:
        server.stop()


def test_a_context_longer_than_the_servers_limit() -> None:
    server = StubServer(max_len=64).start()
    try:
        model = backend(server.url)
        with pytest.raises(ModelError, match="does not fit stub's context of 64 tokens"):
            model.loglikelihood([ChoiceRequest("x" * 100, (" A", " B"))])
    finally:
        server.stop()


def test_the_api_key_comes_from_the_variable_named(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = registry.resolve("openai:stub", {"base_url": stub.url, "api_key_env": "STUB_KEY"})
    monkeypatch.delenv("STUB_KEY", raising=False)
    with pytest.raises(ModelError, match="the API key variable STUB_KEY is not set"):
        registry.check(spec)
    monkeypatch.setenv("STUB_KEY", "sk-secret")
    model = registry.create(spec)
    assert "sk-secret" not in str(model.identity()) and "sk-secret" not in str(spec)
    assert model.client.headers()["Authorization"] == "Bearer sk-secret"  # type: ignore


def test_no_base_url_is_one_line() -> None:
    with pytest.raises(ModelError, match="needs the server's address: -M base_url="):
        registry.check(registry.resolve("openai:stub"))


def test_validation_reports_what_the_server_can_do(stub: StubServer) -> None:
    info = registry.validate(registry.resolve("openai:stub", {"base_url": stub.url}))
    assert info.kind == "served" and info.revision == "served:openai-compatible-stub:stub"
    assert set(info.capabilities) == {"loglikelihood", "generate"}
    assert info.max_context == 4096 and info.extra["dtype"] == "served"
    assert math.isfinite(expected("a", "b"))
