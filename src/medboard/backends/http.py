"""JSON over HTTP for served models: a per-request timeout, retries with backoff on what a busy
or restarting server answers (429, 5xx, timeouts, a connection refused or closed mid-answer),
and one-line errors for everything else (a 4xx with the server's own message, an answer that
is not the JSON asked for). The standard library only: a served model needs no extra package.
"""

import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from medboard.errors import ModelError, TransientError

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class ServerError(ModelError):
    """The server refused a request or answered what cannot be read (one line, after retries)."""


class Refused(ServerError):
    """The server answered the request with a 4xx it means (not a busy server's)."""


class Unavailable(ServerError, TransientError):
    """The server answered every try with what a busy or restarting one answers (429, 5xx), or
    nothing answered: it may be back later."""


@dataclass(frozen=True)
class Client:
    """Requests to one server: `base` is its address (`http://host:port`, no path)."""

    base: str
    timeout: float = 120.0
    retries: int = 5
    api_key_env: str | None = None  # the variable holding the key, never the key itself
    backoff: float = 0.5  # seconds before the first retry, doubled for each next one

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ModelError(f"the API key variable {self.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("POST", path, body)

    def text(self, path: str) -> str:
        """A GET whose answer is plain text (Prometheus metrics)."""
        return self.request("GET", path, raw=True)

    def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, raw: bool = False
    ) -> Any:
        url = self.base.rstrip("/") + path
        data = None if body is None else json.dumps(body).encode()
        last, hint, started = "", "", time.monotonic()
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1) * (1 + random.random() / 4))
            request = urllib.request.Request(url, data, self.headers(), method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    payload = answer.read()
            except urllib.error.HTTPError as exc:
                message = _server_message(exc)
                if exc.code not in RETRY_STATUS:
                    raise Refused(f"{self.base} refused {path}: {exc.code} {message}") from None
                last = f"{exc.code} {message}"
                continue
            except (urllib.error.URLError, TimeoutError, HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{type(reason).__name__}: {reason}".strip()
                hint = _unreachable_hint(reason, self.base)
                continue
            if raw:
                return payload.decode("utf-8", errors="replace")
            try:
                return json.loads(payload)
            except ValueError:
                start = payload[:80].decode("utf-8", errors="replace")
                raise ServerError(f"{self.base}{path} answered no JSON: {start!r}") from None
        tries, spent = self.retries + 1, time.monotonic() - started
        raise Unavailable(
            f"{self.base}{path} failed {tries} time(s) in {spent:.0f} s, last: {last}{hint}"
        )


def _unreachable_hint(reason: object, base: str) -> str:
    """What to check when nothing answered at all (the error alone reads as a medboard fault)."""
    if isinstance(reason, ConnectionRefusedError):
        return f" (nothing listens at {base}: is the server running, and is base_url right?)"
    if isinstance(reason, socket.gaierror):
        return f" (the host of {base} is not known: is base_url right?)"
    return ""


def _server_message(error: urllib.error.HTTPError) -> str:
    """The message of an OpenAI-style error body ({"error": {"message": ...}}), else its text."""
    try:
        body = error.read().decode("utf-8", errors="replace")
    except OSError:
        return error.reason or ""
    try:
        data = json.loads(body)
    except ValueError:
        return " ".join(body.split())[:200]
    detail = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(detail, dict):
        detail = detail.get("message") or detail.get("detail") or detail
    return " ".join(str(detail).split())[:300]
