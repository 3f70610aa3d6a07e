"""A small OpenAI-compatible test server, for what real servers do not do on demand: answer
garbage, close a connection mid-answer, throttle (429), serve no prompt log-probabilities.

Its model ("stub") reads bytes: a text's tokens are its UTF-8 bytes, and the log-probability of
byte b after the bytes before it is a fixed function of b and the previous byte, normalized over
the 256 bytes. Started in a thread (`StubServer().start()`) or as a process
(`python tests/backends/openai_stub.py PORT [MODE]`).
"""

import json
import math
import sys
import threading
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "stub"


@cache
def logprobs_after(previous: int) -> list[float]:
    scores = [math.sin(previous * 7.0 + b * 0.37) * 3.0 for b in range(256)]
    top = max(scores)
    total = math.log(sum(math.exp(s - top) for s in scores)) + top
    return [s - total for s in scores]


@cache
def top_one(previous: int) -> dict[str, float]:
    """The most likely byte after `previous`, as a top_logprobs entry."""
    after = logprobs_after(previous)
    best = max(range(256), key=lambda b: after[b])
    return {chr(best): after[best]}


def token_logprob(tokens: list[int], position: int) -> float:
    return logprobs_after(tokens[position - 1])[tokens[position]]


class StubServer:
    """modes: ok, garbage, close, throttle (two 429s per request, then the answer),
    chat-only (no prompt log-probabilities), slow (each completion waits `delay` s).
    `down_after`: answer that many completions, then 503 to every one (a server restarting
    behind its proxy) until it is set back to None."""

    def __init__(self, mode: str = "ok", max_len: int = 4096, delay: float = 0.0) -> None:
        self.mode, self.max_len, self.delay = mode, max_len, delay
        self.down_after: int | None = None
        self.completions = 0  # completion requests answered
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._throttled: dict[str, int] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub.handle(self, "GET", {})

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size) or b"{}")
                stub.handle(self, "POST", body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "StubServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, handler: BaseHTTPRequestHandler, method: str, body: dict[str, Any]) -> None:
        path = handler.path
        self.requests.append((path, body))
        if self.mode == "close" and path.endswith("/completions"):
            handler.send_response(200)
            handler.send_header("Content-Length", "1000")
            handler.end_headers()
            handler.wfile.write(b'{"choices": [')  # then the connection closes
            return
        if self.mode == "throttle" and path.endswith("/completions"):
            key = json.dumps(body, sort_keys=True)
            if self._throttled.get(key, 0) < 2:
                self._throttled[key] = self._throttled.get(key, 0) + 1
                return self.send(handler, 429, {"error": {"message": "slow down"}})
        if self.mode == "garbage" and path.endswith("/completions"):
            handler.send_response(200)
            handler.send_header("Content-Type", "text/html")
            handler.end_headers()
            handler.wfile.write(b"<html>Bad Gateway</html>")
            return
        if path == "/v1/models":
            data = [{"id": MODEL, "object": "model", "owned_by": "stub",
                     "max_model_len": self.max_len}]  # fmt: skip
            return self.send(handler, 200, {"object": "list", "data": data})
        if path == "/tokenize":
            return self.send(handler, 200, {"tokens": list(body["prompt"].encode())})
        if path == "/v1/completions":
            if self.down_after is not None and self.completions >= self.down_after:
                return self.send(handler, 503, {"error": {"message": "restarting"}})
            self.completions += 1
            if body.get("model") != MODEL:
                message = f"The model `{body.get('model')}` does not exist."
                return self.send(handler, 404, {"error": {"message": message}})
            prompt = body["prompt"]
            length = len(prompt) if isinstance(prompt, list) else len(str(prompt).encode())
            if length + body.get("max_tokens", 16) > self.max_len:
                message = f"This model's maximum context length is {self.max_len} tokens."
                return self.send(handler, 400, {"error": {"message": message}})
            if self.delay:
                threading.Event().wait(self.delay)
            return self.send(handler, 200, self.completion(body))
        if path == "/v1/chat/completions":
            text = "The answer is A."[: body.get("max_tokens", 16)]
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "finish_reason": "stop"}  # fmt: skip
            usage = {"prompt_tokens": 10, "completion_tokens": len(text)}
            return self.send(handler, 200, {"choices": [choice], "usage": usage})
        self.send(handler, 404, {"error": {"message": f"no route {path}"}})

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["prompt"]
        tokens = prompt if isinstance(prompt, list) else list(str(prompt).encode())
        after = logprobs_after(tokens[-1])
        best = max(range(256), key=lambda b: after[b])
        k = int(body.get("logprobs") or 0)
        ranked = sorted(range(256), key=lambda b: -after[b])
        top = {chr(b): after[b] for b in ranked[: max(k, 1)]}
        logprobs: dict[str, Any] | None = None
        if "logprobs" in body and body["logprobs"] is not None:
            if body.get("echo") and self.mode != "chat-only":
                values = [None] + [token_logprob(tokens, p) for p in range(1, len(tokens))]
                tops = [None] + [top_one(tokens[p - 1]) for p in range(1, len(tokens))]
                logprobs = {"tokens": [chr(t) for t in tokens] + [chr(best)],
                            "token_logprobs": values + [after[best]],
                            "top_logprobs": tops + [top]}  # fmt: skip
            elif body.get("echo"):
                logprobs = None  # a chat model's completions: no prompt log-probabilities
            else:
                logprobs = {"tokens": [chr(best)], "token_logprobs": [after[best]],
                            "top_logprobs": [top]}  # fmt: skip
        text = chr(best) if body.get("max_tokens", 16) else ""
        choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": "length"}
        usage = {"prompt_tokens": len(tokens), "completion_tokens": 1}
        return {"choices": [choice], "usage": usage}

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


if __name__ == "__main__":  # python tests/backends/openai_stub.py PORT [MODE] [DELAY]
    port = int(sys.argv[1])
    server = StubServer(sys.argv[2] if len(sys.argv) > 2 else "ok",
                        delay=float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)  # fmt: skip
    server.httpd.server_close()
    server.httpd = ThreadingHTTPServer(("127.0.0.1", port), server.httpd.RequestHandlerClass)
    server.httpd.serve_forever()
