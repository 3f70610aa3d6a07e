"""Rendered leaderboard views served from memory, before routing.

The leaderboard page and its JSON twin are read far more often than the board changes. Their
routes render a view once per database state into a `CachedBody` (the bytes, and the same bytes
gzipped) kept in the `BoardCache` under the exact path and query string asked for. The
`CachedViews` middleware answers a GET for such a URL straight from that cache while the cache's
fingerprint is fresh, with no routing, no query parsing and no thread hop; anything else (a URL
not rendered yet, a fingerprint due for a check, every other route) goes to the app as usual,
and the route answers with the same bytes.
"""

import gzip
import hashlib
from collections.abc import Hashable
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from medboard.web.cache import BoardCache

MIN_GZIP_BYTES = 1024


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header takes gzip (`gzip;q=0` refuses it)."""
    for part in (accept_encoding or "").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            q = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


@dataclass(frozen=True)
class CachedBody:
    """A rendered response body, its gzipped twin and its headers."""

    body: bytes
    media_type: str
    gzipped: bytes | None = None
    etag: str = ""
    nbytes: int = field(default=0, compare=False)

    @classmethod
    def of(cls, body: bytes, media_type: str) -> "CachedBody":
        packed = gzip.compress(body, 6, mtime=0) if len(body) >= MIN_GZIP_BYTES else None
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        size = len(body) + len(packed or b"")
        return cls(body, media_type, packed, etag, size)

    def answer(self, headers: Headers) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body for a request with these headers: 304 when the client has
        this version (If-None-Match), gzipped when it takes gzip."""
        etag = (b"etag", self.etag.encode("latin-1"))
        if headers.get("if-none-match") == self.etag:
            return 304, [etag], b""
        gzipped = self.gzipped is not None and accepts_gzip(headers.get("accept-encoding"))
        body = self.gzipped if gzipped and self.gzipped is not None else self.body
        raw = [
            (b"content-type", self.media_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("latin-1")),
            etag,
        ]
        if self.gzipped is not None:
            raw.append((b"vary", b"Accept-Encoding"))
            if gzipped:
                raw.append((b"content-encoding", b"gzip"))
        return 200, raw, body

    def response(self, headers: Headers) -> Response:
        """The same answer as a Response (for the routes)."""
        status, raw, body = self.answer(headers)
        response = Response(body, status_code=status)
        response.raw_headers = raw
        return response


def url_key(path: str, query_string: bytes) -> tuple[Hashable, ...]:
    """The cache key of a URL as asked for."""
    return ("url", path, query_string)


class CachedViews:
    """ASGI middleware: a GET of a URL whose rendered view is cached is answered from memory."""

    def __init__(self, app: ASGIApp, cache: BoardCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            found = self.cache.peek(url_key(scope["path"], scope["query_string"]))
            if isinstance(found, CachedBody):
                status, headers, body = found.answer(Headers(scope=scope))
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
