"""A local stand-in for the Hugging Face Hub's HTTP API, enough for huggingface_hub's real
client (`HF_ENDPOINT=http://127.0.0.1:PORT`): a repository is a folder `root/ORG/NAME` at one
commit. It answers the model-info API (`/api/models/ORG/NAME[/revision/REV]`, its files with
their sizes) and the file endpoint (`/ORG/NAME/resolve/REV/PATH`, HEAD and GET, byte ranges),
with the headers and error codes the client reads, and it records every request (method, path,
Range header) so a test can tell what was downloaded; `busy` makes it answer every request with
one status (a Hub that is down). The Hub itself is unreachable here; this
is the boundary the tests mock, and everything of medboard's and huggingface_hub's runs for
real against it."""

import hashlib
import json
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

COMMIT = "c0ffee0123456789abcdef0123456789abcdef01"
CARD = "---\nlicense: apache-2.0\n---\n# A tiny test model\n"
_INFO = re.compile(r"^/api/models/([^/]+/[^/]+?)(?:/revision/([^/]+))?/?$")
_TREE = re.compile(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)/?$")
_FILE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class HubServer:
    """The Hub on 127.0.0.1 (start(), url, stop()), serving the repositories under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        self.busy: int | None = None  # a status every request is answered with (503: down)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def do_GET(self) -> None:
                hub._answer(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> "HubServer":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def downloaded(self, name: str) -> list[str]:
        """The GET requests of a file named `name`, each as its Range header ('' for all)."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/" + name)]

    def _at(
        self, handler: BaseHTTPRequestHandler, repo: str, revision: str, body: bool
    ) -> Path | None:
        """The repository's folder at `revision` (main or its one commit), or None when the
        Hub answered that it has no such repository or revision."""
        folder = self.root / repo
        if ".." in repo or not folder.is_dir():
            _error(handler, 404, "RepoNotFound", body)
            return None
        if revision not in ("main", COMMIT):
            _error(handler, 404, "RevisionNotFound", body)
            return None
        return folder

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append((handler.command, path, handler.headers.get("Range", "")))
        if self.busy is not None:
            return _error(handler, self.busy, "ServiceUnavailable", body)
        info, file, tree = _INFO.match(path), _FILE.match(path), _TREE.match(path)
        if tree is not None:
            self._tree(handler, tree.group(1), tree.group(2), body)
        elif info is not None:
            self._info(handler, info.group(1), info.group(2) or "main", body)
        elif file is not None:
            self._file(handler, file.group(1), file.group(2), file.group(3), body)
        else:
            _error(handler, 404, "RepoNotFound", body)

    def _info(self, handler: BaseHTTPRequestHandler, repo: str, revision: str, body: bool) -> None:
        folder = self._at(handler, repo, revision, body)
        if folder is None:
            return None
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        data = {
            "id": repo, "modelId": repo, "sha": COMMIT, "private": False, "gated": False,
            "disabled": False, "tags": [], "lastModified": "2026-12-01T00:00:00.000Z",
            "siblings": [
                {"rfilename": p.relative_to(folder).as_posix(), "size": p.stat().st_size}
                for p in files
            ],
        }  # fmt: skip
        _send(handler, 200, json.dumps(data).encode(), {"Content-Type": "application/json"}, body)

    def _tree(self, handler: BaseHTTPRequestHandler, repo: str, revision: str, body: bool) -> None:
        """The recursive listing (one page): every file and folder with its size and id."""
        folder = self._at(handler, repo, revision, body)
        if folder is None:
            return None
        entries = []
        for item in sorted(folder.rglob("*")):
            name = item.relative_to(folder).as_posix()
            oid = hashlib.sha1(name.encode()).hexdigest()
            if item.is_dir():
                entries.append({"type": "directory", "path": name, "oid": oid})
            else:
                entries.append(
                    {"type": "file", "path": name, "size": item.stat().st_size, "oid": oid}
                )
        data = json.dumps(entries).encode()
        _send(handler, 200, data, {"Content-Type": "application/json"}, body)

    def _file(
        self, handler: BaseHTTPRequestHandler, repo: str, revision: str, name: str, body: bool
    ) -> None:
        folder = self._at(handler, repo, revision, body)
        if folder is None:
            return None
        file = folder / name
        if ".." in name or not file.is_file():
            return _error(handler, 404, "EntryNotFound", body)
        data = file.read_bytes()
        headers = {
            "X-Repo-Commit": COMMIT,
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        wanted = _RANGE.match(handler.headers.get("Range", ""))
        if wanted is None:
            return _send(handler, 200, data, headers, body)
        start = int(wanted.group(1))
        end = min(int(wanted.group(2)) if wanted.group(2) else len(data) - 1, len(data) - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        _send(handler, 206, data[start : end + 1], headers, body)


def _send(
    handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str], body: bool
) -> None:
    handler.send_response(status)
    for key, value in {**headers, "Content-Length": str(len(data))}.items():
        handler.send_header(key, value)
    handler.end_headers()
    if body:
        handler.wfile.write(data)


def _error(handler: BaseHTTPRequestHandler, status: int, code: str, body: bool) -> None:
    data = json.dumps({"error": code}).encode()
    _send(handler, status, data, {"X-Error-Code": code, "Content-Type": "application/json"}, body)


@contextmanager
def online_hub(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """The Hub at a local address serving folder/hub, an empty Hub cache folder/cache, online:
    huggingface_hub's endpoint (HF_ENDPOINT, read at its import) and cache set again here."""
    import huggingface_hub.constants as constants

    server = HubServer(folder / "hub").start()
    template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        yield server
    finally:
        server.stop()


def hub_repo(root: Path, model: Path, name: str) -> Path:
    """`model` (a folder) as the Hub repository `name`, with what real ones carry beside it: a
    PyTorch copy of the weights, an ONNX export and an original checkpoint in folders, a model
    card that names a license."""
    repo = root / name
    shutil.copytree(model, repo)
    (repo / "README.md").write_text(CARD)
    (repo / "pytorch_model.bin").write_bytes(b"\0" * 4096)
    (repo / "onnx").mkdir()
    (repo / "onnx" / "model.onnx").write_bytes(b"\0" * 4096)
    (repo / "original").mkdir()
    (repo / "original" / "consolidated.00.pth").write_bytes(b"\0" * 4096)
    return repo
