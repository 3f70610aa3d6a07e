"""A model spec: which backend, which model, and that backend's own arguments, as one value.

Its text is the model as users name it, with the backend as a prefix: `hf:org/model`,
`fake:bias=A`, later `openai:...`. Without a prefix the model is a transformers model (a local
directory, a .gguf file or a Hub id), so every model string that worked before still does; `fake`
alone is the test model. The arguments (`-M key=value` on the command line, as inspect_ai's `-M`
and lm-eval's `--model_args`) are typed by the backend's own declaration (`Arg`), so that a value
of the wrong type or an unknown key is refused before anything runs.

`str(spec)` prints the spec as the command line takes it (`model -M key=value ...`), and
`ModelSpec.from_text` reads that back; a submission stores the text and the arguments in their
own columns (queue.submissions), and a worker rebuilds the same spec from them.
"""

import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medboard.errors import ModelError

DEFAULT_BACKEND = "hf"
# A backend prefix: a lowercase name and a colon, as in `fake:bias=A` or `openai:gpt-4o`.
_PREFIX = re.compile(r"^([a-z][a-z0-9_]*):(.*)$", re.DOTALL)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


# The longest name of one path component on the file systems medboard runs on (bytes).
NAME_MAX = 255


def user_path(text: str | Path) -> Path:
    """`text` as a path, `~` expanded where it can be (an unknown `~user` stays as written)."""
    path = Path(text)
    try:
        return path.expanduser()
    except RuntimeError:  # "Could not determine home directory"
        return path


def local_kind(text: str | Path) -> Literal["dir", "file", "other"] | None:
    """What a path given by a user names here: a directory, a file, something else, or None
    when it names nothing. A name the system cannot look up (a component over 255 bytes, a NUL
    byte, text that is not valid in a file name, a folder that may not be entered) names nothing:
    asking never fails, so a model string is never a 500 or a traceback."""
    try:
        mode = user_path(text).stat().st_mode
    except (OSError, ValueError):
        return None
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def overlong_component(text: str) -> bool:
    """Whether a component of the path `text` is longer than a file name can be."""
    return any(len(part.encode("utf-8", "surrogatepass")) > NAME_MAX for part in text.split("/"))


def split_prefix(text: str) -> tuple[str | None, str]:
    """(backend prefix or None, the rest): a local path that exists is never a prefix."""
    if text in ("fake",):
        return text, ""
    match = _PREFIX.match(text)
    if match is None or local_kind(text) is not None:
        return None, text
    return match.group(1), match.group(2)


@dataclass(frozen=True)
class Arg:
    """One argument a backend takes: its type, default, choices and help.

    `per_run`: how the evaluation runs (device, batch size, kernels), which a worker may set for
    the jobs it runs; otherwise the argument says which model is evaluated (dtype, adapter,
    revision) and belongs to the submission."""

    help: str
    kind: type = str  # str, int, float or bool
    default: Any = None
    choices: tuple[str, ...] = ()
    per_run: bool = False
    minimum: float | None = None  # the least value a number may take, and the most
    maximum: float | None = None
    # Whether a public submission (the web form, the API) may set it (a `per_run` argument it
    # never may, unless it is a server), and whether it is the address of a server medboard
    # connects to, which a public submission may name only among the operator's
    # (MEDBOARD_PUBLIC_SERVERS); the operator's commands always may
    # (queue.public.check_public_args).
    public: bool = True
    server: bool = False

    @property
    def operators_only(self) -> bool:
        """Whether only the operator's commands may set it, never a public submission: marked
        so, or how a job runs (`per_run`) and not a server's address."""
        return not self.public or (self.per_run and not self.server)

    def parse(self, backend: str, key: str, value: Any) -> Any:
        """The typed value of `value` (text from a command line, form or database)."""
        if isinstance(value, self.kind) and not (self.kind is int and isinstance(value, bool)):
            typed = value
        else:
            text = str(value).strip()
            typed = _convert(self.kind, text)
            if typed is None:
                kind = {int: "an integer", float: "a number", bool: "true or false"}.get(
                    self.kind, "text"
                )
                raise ModelError(f"backend {backend}: {key} takes {kind}, not '{text}'")
        if self.choices and typed not in self.choices:
            allowed = ", ".join(self.choices)
            raise ModelError(f"backend {backend}: unknown {key} '{typed}' (choose from {allowed})")
        if self.minimum is not None and typed < self.minimum:
            raise ModelError(
                f"backend {backend}: {key} must be at least {self.minimum}, not {typed}"
            )
        if self.maximum is not None and typed > self.maximum:
            raise ModelError(
                f"backend {backend}: {key} must be at most {self.maximum}, not {typed}"
            )
        return typed


def _convert(kind: type, text: str) -> Any:
    """`text` as `kind`, or None when it is not one."""
    if kind is bool:
        low = text.lower()
        return True if low in _TRUE else False if low in _FALSE else None
    try:
        return kind(text) if text or kind is str else None
    except ValueError:
        return None


def parse_assignments(items: list[str] | tuple[str, ...] | None) -> dict[str, str]:
    """`key=value` items (repeated -M options, or comma-separated in one) as a dict."""
    found: dict[str, str] = {}
    for item in items or ():
        for part in filter(None, (p.strip() for p in item.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ModelError(f"-M takes key=value, not '{part}'")
            found[key.strip()] = value.strip()
    return found


@dataclass(frozen=True)
class ModelSpec:
    """Which backend (a registry name), which model (as that backend names it) and the
    backend's arguments, typed (registry.resolve checks them against the backend's)."""

    backend: str
    model: str
    args: tuple[tuple[str, Any], ...] = field(default=())

    @classmethod
    def of(cls, backend: str, model: str, args: Mapping[str, Any] | None = None) -> "ModelSpec":
        return cls(backend, model, tuple(sorted((args or {}).items())))

    @classmethod
    def from_text(cls, text: str) -> tuple[str, dict[str, str]]:
        """What `str(spec)` printed: (the model text, the arguments as text), for
        registry.resolve to type."""
        model, *assignments = text.split(" -M ")
        return model.strip(), parse_assignments(assignments)

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.args).get(key, default)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.args)

    def with_args(self, changes: Mapping[str, Any]) -> "ModelSpec":
        return ModelSpec.of(self.backend, self.model, {**self.options, **changes})

    @property
    def text(self) -> str:
        """The model as users name it: with its backend's prefix, except a transformers model
        whose name cannot be mistaken for a prefixed one, and the plain fake model."""
        if self.backend == DEFAULT_BACKEND and split_prefix(self.model)[0] is None:
            return self.model
        if self.backend == "fake" and not self.model:
            return "fake"
        return f"{self.backend}:{self.model}"

    def __str__(self) -> str:
        return " ".join([self.text, *(f"-M {k}={_text(v)}" for k, v in self.args)])


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
