"""What the public may submit (the web form and API): never a probe of the server's files, never
a download inside a request.

A transformers model (no prefix, or `hf:`) is either a Hub id, queued unchecked for the worker
to validate (validating it means downloading it: submissions.validate_queued), or a path inside
the operator's models folder (MEDBOARD_MODELS_DIR), checked in the request as `medboard submit`
checks it. Any other path, and an adapter outside the folder, gets one message, PATH_REFUSED,
whether it exists or not, whether it gets out of the folder by `..` or by a symlink. Whether a
text is a Hub id is decided by its spelling alone (HUB_ID), never by looking at the disk: a
relative `dir/model` is a Hub id here, and a path relative to the models folder otherwise.
Other backends (`BACKEND:MODEL`) check their models their own way. The public uses only the
backends the operator lists (MEDBOARD_PUBLIC_BACKENDS; unset: all but the test model, `fake`).
Backend arguments the operator keeps (`Arg.public` False: `api_key_env`, which names a variable
of the server's environment; and every `per_run` one, how a job runs on the worker's machine:
batch sizes, devices, kernels, concurrency) are refused before anything is contacted, and a
server address (`base_url`) only names one of the operator's servers (MEDBOARD_PUBLIC_SERVERS).

The operator's `medboard submit` is not public: it validates local paths as before.
"""

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from medboard.backends import registry
from medboard.backends.spec import DEFAULT_BACKEND
from medboard.errors import MedboardError, SubmissionError
from medboard.queue.limits import rate_limit

# org/name as the Hub spells them (each part at most 96 characters), and no "..".
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$", re.ASCII)
_PREFIX = re.compile(r"^([a-z][a-z0-9_]*):(.*)$", re.DOTALL)  # as backends.spec's
SERVERS_ENV = "MEDBOARD_PUBLIC_SERVERS"
BACKENDS_ENV = "MEDBOARD_PUBLIC_BACKENDS"
MAX_PARAMS_ENV = "MEDBOARD_PUBLIC_MAX_PARAMS"
_COUNT = re.compile(r"^(\d+(?:\.\d*)?(?:e\d+)?)\s*([kmbt]?)$", re.IGNORECASE)
# The one answer to every local path the public may not submit, whether it exists or not.
PATH_REFUSED = (
    "{field}: local paths are not taken here; give a Hub id (org/name), or a path in the "
    "server's models folder"
)
# The one answer of a worker to a public Hub id it cannot get, whatever the reason (a path
# that exists on the worker's machine included: the queue page must not tell which).
NOT_ON_HUB = "{model} is not a public Hub model the worker can get"


def models_dir() -> Path | None:
    """The operator's folder of models the public may submit by path (MEDBOARD_MODELS_DIR;
    unset: none), symlinks resolved."""
    folder = os.environ.get("MEDBOARD_MODELS_DIR", "")
    return Path(os.path.realpath(folder)) if folder else None


def _inside(text: str, folder: Path | None) -> str | None:
    """The real path `text` names (relative to `folder`) when it lies inside `folder` after
    `..` and symlinks are resolved, else None. The answer does not depend on whether it
    exists."""
    if folder is None or not text or text.startswith("~"):
        return None
    try:
        real = Path(os.path.realpath(folder / text))  # an absolute `text` replaces `folder`
    except (OSError, ValueError):  # a NUL byte, text no file name can hold
        return None
    return str(real) if real.is_relative_to(folder) else None


def check_public_args(backend: str, given: Mapping[str, Any]) -> None:
    """A public request sets none of the arguments its backend keeps for the operator: those
    marked so (`Arg.public`: `-M api_key_env=VAR` would have sent the value of any variable of
    the server's environment, its admin token or database URL, to the base_url the submitter
    chose), and how a job runs on the worker's machine (`Arg.per_run`: `batch_tokens=10**9`
    asks for a whole task in one forward pass, out of the worker's memory for a large model;
    `concurrency=10000` would flood the operator's model server),
    except a server's address, which names one of the operator's servers (public_server)."""
    table = registry.provider(backend).args
    kept = sorted(key for key in given if key in table and table[key].operators_only)
    if kept:
        raise SubmissionError(
            f"{kept[0]} is not taken from a public submission: the board's operator sets it "
            f"(medboard submit, or medboard worker -M {kept[0]}=... for the jobs a worker runs)"
        )
    for key in sorted(key for key in given if key in table and table[key].server):
        if not public_server(str(given[key])):
            listed = ", ".join(public_servers()) or "none are"
            raise SubmissionError(
                f"{key}: a public submission may name only the servers the board's operator "
                f"lists in {SERVERS_ENV} ({listed})"
            )


def public_servers() -> list[str]:
    """The servers a public submission may name (MEDBOARD_PUBLIC_SERVERS: comma-separated
    `scheme://host[:port]`; without a port, any port of that host; unset: none)."""
    return [s.strip().rstrip("/") for s in os.environ.get(SERVERS_ENV, "").split(",") if s.strip()]


def _origin(url: str) -> tuple[str, str, int | None] | None:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:  # a port that is not a number
        return None


def public_server(url: str) -> bool:
    """Whether `url` is at one of the operator's servers (public_servers): a public submission
    naming any address made the server (and its workers) send requests wherever it said and
    show what came back in the refusal, a way into the operator's network."""
    mine = _origin(url)
    if mine is None or not mine[1]:
        return False
    scheme, host, port = mine
    port = port or {"http": 80, "https": 443}.get(scheme)
    return any(
        allowed is not None and allowed[:2] == (scheme, host) and allowed[2] in (None, port)
        for allowed in map(_origin, public_servers())
    )


def public_max_parameters() -> float | None:
    """The most parameters a public Hub submission may have (MEDBOARD_PUBLIC_MAX_PARAMS: 8e9,
    8B, 800M ...; unset: no cap). The worker that validates the submission reads the count from
    the Hub before it downloads the weights (backends.hf_hub)."""
    text = os.environ.get(MAX_PARAMS_ENV, "").strip()
    if not text:
        return None
    found = _COUNT.match(text)
    if found is None or float(found.group(1)) <= 0:
        raise SubmissionError(
            f"{MAX_PARAMS_ENV}={text!r} is not a number of parameters (8e9, 8B, 800M ...)"
        )
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[found.group(2).lower()]
    return float(found.group(1)) * scale


def check_public_settings() -> None:
    """The operator's settings for public submissions, read when a board or worker starts: a
    wrong one is one line then, not a refusal each submitter sees."""
    rate_limit()
    public_max_parameters()
    unknown = sorted(set(public_backends()) - set(registry.known()))
    if unknown:
        raise SubmissionError(
            f"{BACKENDS_ENV} names unknown backend '{unknown[0]}' "
            f"(known: {', '.join(registry.known())})"
        )


def public_backends() -> list[str]:
    """The backends a public submission may use: those listed in MEDBOARD_PUBLIC_BACKENDS
    (comma-separated names), or where it is unset every backend that does not say it is for
    the operator alone (`public = False`: the fake test model, whose entries would sit on the
    board beside real models)."""
    listed = [name.strip() for name in os.environ.get(BACKENDS_ENV, "").split(",")]
    if any(listed):
        return [name for name in listed if name]
    found = []
    for name in registry.known():
        try:
            if getattr(registry.provider(name), "public", True):
                found.append(name)
        except MedboardError:  # a plugin that does not load is nobody's to use
            continue
    return found


def _check_backend(backend: str) -> None:
    try:  # an unknown backend is named as such, whatever the disk holds
        registry.provider(backend)
    except MedboardError as exc:
        raise SubmissionError(str(exc)) from None
    allowed = public_backends()
    if backend not in allowed:
        raise SubmissionError(
            f"{backend}: models are not taken from a public submission here (this board takes "
            f"{', '.join(f'{name}:' for name in allowed) or 'none'}; its operator sets "
            f"{BACKENDS_ENV}, and may queue any model with medboard submit)"
        )


def public_model(model: str, adapter: str | None) -> tuple[str, str | None, bool]:
    """(model, adapter, deferred): the model text and adapter a public request may queue (a
    local path as its real path inside the models folder), and whether validation is left to
    the worker (a Hub id); SubmissionError(PATH_REFUSED) for any other path."""
    text = model.strip()
    prefix = _PREFIX.match(text)
    _check_backend(prefix.group(1) if prefix is not None else DEFAULT_BACKEND)
    if prefix is not None:
        if prefix.group(1) != DEFAULT_BACKEND:
            return model, adapter, False
        text = prefix.group(2)
    folder = models_dir()
    if adapter:
        adapter = _inside(adapter.strip(), folder)
        if adapter is None:
            raise SubmissionError(PATH_REFUSED.format(field="adapter"))
    if HUB_ID.match(text) is not None and ".." not in text:
        return text, adapter, True
    local = _inside(text, folder)
    if local is None:
        raise SubmissionError(PATH_REFUSED.format(field="model"))
    return local, adapter, False
